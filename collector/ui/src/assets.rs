//! Static assets compiled into the binary and served under names carrying
//! their content hash, so browsers may cache them for a year: a new build
//! with changed files links new names.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The name pages use to refer to it, e.g. `vigil.css`.
    pub logical: &'static str,
    /// The served name, e.g. `vigil.3f2a…c1.css`.
    pub hashed: String,
    pub bytes: &'static [u8],
    /// The same, gzip-compressed ahead of time (`gzip -9n`), for browsers
    /// that accept it: no compression at run time, no dependency for it.
    pub gzip: Option<&'static [u8]>,
    pub content_type: &'static str,
}

type File = (
    &'static str,
    &'static [u8],
    Option<&'static [u8]>,
    &'static str,
);

const FILES: &[File] = &[
    (
        "vigil.css",
        include_bytes!("../assets/vigil.css"),
        Some(include_bytes!("../assets/vigil.css.gz")),
        "text/css; charset=utf-8",
    ),
    (
        "vigil.js",
        include_bytes!("../assets/vigil.js"),
        Some(include_bytes!("../assets/vigil.js.gz")),
        "text/javascript; charset=utf-8",
    ),
    (
        "uplot.min.js",
        include_bytes!("../assets/uplot.min.js"),
        Some(include_bytes!("../assets/uplot.min.js.gz")),
        "text/javascript; charset=utf-8",
    ),
    (
        "uplot.min.css",
        include_bytes!("../assets/uplot.min.css"),
        Some(include_bytes!("../assets/uplot.min.css.gz")),
        "text/css; charset=utf-8",
    ),
    (
        "LICENSE.uplot",
        include_bytes!("../assets/LICENSE.uplot"),
        None,
        "text/plain; charset=utf-8",
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(logical, bytes, gzip, content_type)| {
            let digest = hex::encode(Sha256::digest(bytes));
            let hashed = match logical.split_once('.') {
                Some((stem, ext)) => format!("{stem}.{}.{ext}", &digest[..12]),
                None => format!("{logical}.{}", &digest[..12]),
            };
            Asset {
                logical,
                hashed,
                bytes,
                gzip: *gzip,
                content_type,
            }
        })
        .collect()
});

/// Every embedded asset.
pub fn all() -> &'static [Asset] {
    &ASSETS
}

/// The URL path of an asset by its logical name.
pub fn url(logical: &str) -> String {
    match ASSETS.iter().find(|a| a.logical == logical) {
        Some(a) => format!("/ui/static/{}", a.hashed),
        // A typo in a page is a bug; a dead link shows it in the browser.
        None => format!("/ui/static/missing-{logical}"),
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            parts.next().is_some_and(|c| c.trim() == "gzip") && parts.all(|p| p.trim() != "q=0")
        })
}

/// `GET /ui/static/{name}`: hashed names are immutable and cached for a year.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.hashed == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let common = [
        (header::CONTENT_TYPE, a.content_type),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::VARY, "Accept-Encoding"),
    ];
    match a.gzip {
        Some(gz) if accepts_gzip(&headers) => {
            (common, [(header::CONTENT_ENCODING, "gzip")], gz).into_response()
        }
        _ => (common, a.bytes).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `.gz` twins must be the current files, compressed:
    /// after editing an asset, `gzip -9nkf collector/ui/assets/FILE`.
    #[test]
    fn gzip_twins_match_their_sources() {
        for a in all() {
            let Some(gz) = a.gzip else { continue };
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("gzip runs");
            {
                use std::io::Write as _;
                let mut stdin = child.stdin.take().expect("stdin");
                stdin.write_all(gz).expect("write");
            }
            let out = child.wait_with_output().expect("gzip output");
            assert!(
                out.stdout == a.bytes,
                "{}.gz is stale: run gzip -9nkf collector/ui/assets/{}",
                a.logical,
                a.logical
            );
        }
    }

    #[test]
    fn hashed_names_differ_by_content_and_resolve() {
        let all = super::all();
        assert!(all.len() >= 4);
        for a in all {
            assert_ne!(a.hashed, a.logical);
            assert_eq!(super::url(a.logical), format!("/ui/static/{}", a.hashed));
        }
        let css = super::url("vigil.css");
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br".parse().expect("value"),
        );
        assert!(super::accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            "br, gzip;q=0".parse().expect("value"),
        );
        assert!(!super::accepts_gzip(&h));
        assert!(css.starts_with("/ui/static/vigil.") && css.ends_with(".css"));
    }
}
