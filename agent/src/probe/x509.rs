//! Just enough X.509 (DER) to read a certificate's `notAfter`: the probe
//! reports it as `probe_ssl_earliest_cert_expiry`, as blackbox_exporter
//! does. Every length and tag is checked; malformed input is an error,
//! never a panic (see the property tests).

/// Why a certificate could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("truncated DER")]
    Truncated,
    #[error("unexpected DER tag {0:#04x}")]
    Tag(u8),
    #[error("DER length too large")]
    Length,
    #[error("invalid time {0:?}")]
    Time(String),
}

struct Der<'a> {
    bytes: &'a [u8],
}

impl<'a> Der<'a> {
    /// Reads one element: its tag and contents.
    fn next(&mut self) -> Result<(u8, &'a [u8]), CertError> {
        let (&tag, rest) = self.bytes.split_first().ok_or(CertError::Truncated)?;
        let (&first, mut rest) = rest.split_first().ok_or(CertError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(CertError::Length);
            }
            if rest.len() < n {
                return Err(CertError::Truncated);
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(CertError::Truncated);
        }
        let (content, after) = rest.split_at(len);
        self.bytes = after;
        Ok((tag, content))
    }

    fn expect(&mut self, want: u8) -> Result<&'a [u8], CertError> {
        let (tag, content) = self.next()?;
        if tag == want {
            Ok(content)
        } else {
            Err(CertError::Tag(tag))
        }
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// The certificate's `notAfter` as Unix seconds.
pub fn not_after(cert_der: &[u8]) -> Result<i64, CertError> {
    let cert = Der { bytes: cert_der }.expect(SEQUENCE)?;
    let tbs = Der { bytes: cert }.expect(SEQUENCE)?;
    let mut tbs = Der { bytes: tbs };
    let (mut tag, mut content) = tbs.next()?;
    if tag == VERSION {
        (tag, content) = tbs.next()?;
    }
    let _serial = if tag == INTEGER {
        content
    } else {
        return Err(CertError::Tag(tag));
    };
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Der {
        bytes: tbs.expect(SEQUENCE)?,
    };
    let _not_before = validity.next()?;
    let (tag, time) = validity.next()?;
    let text = std::str::from_utf8(time).map_err(|_| CertError::Time(format!("{time:?}")))?;
    match tag {
        UTC_TIME => parse_time(text, false),
        GENERALIZED_TIME => parse_time(text, true),
        other => Err(CertError::Tag(other)),
    }
}

/// `YYMMDDHHMMSSZ` (UTCTime; RFC 5280: 50-99 are 19xx) or
/// `YYYYMMDDHHMMSSZ` (GeneralizedTime).
fn parse_time(text: &str, four_digit_year: bool) -> Result<i64, CertError> {
    let bad = || CertError::Time(text.to_string());
    let digits = text.strip_suffix('Z').ok_or_else(bad)?;
    let year_len = if four_digit_year { 4 } else { 2 };
    if digits.len() != year_len + 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |from: usize, len: usize| -> i64 {
        digits[from..from + len]
            .bytes()
            .fold(0, |n, b| n * 10 + i64::from(b - b'0'))
    };
    let mut year = num(0, year_len);
    if !four_digit_year {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let (month, day) = (num(year_len, 2), num(year_len + 2, 2));
    let (hour, minute, second) = (
        num(year_len + 4, 2),
        num(year_len + 6, 2),
        num(year_len + 8, 2),
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_match_the_calendar() {
        assert_eq!(parse_time("700101000000Z", false), Ok(0));
        assert_eq!(parse_time("491231235959Z", false), Ok(2_524_607_999));
        assert_eq!(parse_time("20380119031408Z", true), Ok(2_147_483_648));
        assert_eq!(parse_time("20000229120000Z", true), Ok(951_825_600));
        assert!(parse_time("20001329120000Z", true).is_err());
        assert!(parse_time("2000022912000Z", true).is_err());
        assert!(parse_time("200002291200000", true).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = not_after(&bytes);
        }

        #[test]
        fn generalized_time_agrees_with_chrono(secs in 0i64..32_503_680_000) {
            let t = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
            let text = t.format("%Y%m%d%H%M%SZ").to_string();
            prop_assert_eq!(parse_time(&text, true), Ok(secs));
        }
    }
}
