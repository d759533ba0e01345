//! Static assets compiled into the binary and served under names carrying
//! their content hash, so browsers may cache them for a year: a new build
//! with changed files links new names.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The name pages use to refer to it, e.g. `vigil.css`.
    pub logical: &'static str,
    /// The served name, e.g. `vigil.3f2a…c1.css`.
    pub hashed: String,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

const FILES: &[(&str, &[u8], &str)] = &[
    (
        "vigil.css",
        include_bytes!("../assets/vigil.css"),
        "text/css; charset=utf-8",
    ),
    (
        "vigil.js",
        include_bytes!("../assets/vigil.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "uplot.min.js",
        include_bytes!("../assets/uplot.min.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "uplot.min.css",
        include_bytes!("../assets/uplot.min.css"),
        "text/css; charset=utf-8",
    ),
    (
        "LICENSE.uplot",
        include_bytes!("../assets/LICENSE.uplot"),
        "text/plain; charset=utf-8",
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(logical, bytes, content_type)| {
            let digest = hex::encode(Sha256::digest(bytes));
            let hashed = match logical.split_once('.') {
                Some((stem, ext)) => format!("{stem}.{}.{ext}", &digest[..12]),
                None => format!("{logical}.{}", &digest[..12]),
            };
            Asset {
                logical,
                hashed,
                bytes,
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

/// `GET /ui/static/{name}`: hashed names are immutable and cached for a year.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.hashed == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashed_names_differ_by_content_and_resolve() {
        let all = super::all();
        assert!(all.len() >= 4);
        for a in all {
            assert_ne!(a.hashed, a.logical);
            assert_eq!(super::url(a.logical), format!("/ui/static/{}", a.hashed));
        }
        let css = super::url("vigil.css");
        assert!(css.starts_with("/ui/static/vigil.") && css.ends_with(".css"));
    }
}
