//! What a PostgreSQL connection string's `sslmode` asks for, read as operators read libpq's:
//!
//! | `sslmode` | meaning |
//! | --- | --- |
//! | `disable` | plaintext |
//! | `require` | TLS, the server's certificate not checked |
//! | `verify-ca` | TLS, the certificate signed by a trusted CA (any host name) |
//! | `verify-full`, or none given | TLS, a trusted CA and the host name the string names |
//! | `prefer`, `allow` | refused: they fall back to plaintext without saying so |
//!
//! wasmpay never falls back to plaintext silently, so a string without `sslmode` means
//! `verify-full`. The trusted CAs are the system's, or the operator's (`db_ca_cert` for the
//! components, `DATABASE_CA_FILE` for the bridge). tokio-postgres, which Spin and the bridge
//! use, knows only `disable`, `prefer` and `require`: [`DatabaseUrl::with_sslmode`] hands a
//! client the string with the mode it understands, and the client's TLS settings do the
//! rest.

/// What the connection string asks of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("sslmode={0} may fall back to plaintext without saying so: use sslmode=verify-full (or disable, for a plaintext connection on purpose)")]
    MayFallBack(String),
    #[error("sslmode={0} is not a PostgreSQL sslmode (disable, require, verify-ca, verify-full)")]
    Unknown(String),
    #[error("sslmode is given more than once")]
    Repeated,
    #[error("sslmode={0} asks for fewer checks than Spin's Postgres client makes (it verifies the certificate's chain and host name whenever it uses TLS): use sslmode=verify-full, with db_ca_cert for a CA the system does not hold")]
    SpinVerifiesFully(&'static str),
}

/// A connection string and the TLS it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    tls: Tls,
    /// The string without its `sslmode`.
    rest: String,
    /// URL form (`postgres://…?k=v&…`) rather than key=value words.
    url_form: bool,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url_form = text.starts_with("postgres://") || text.starts_with("postgresql://");
        let (rest, mode) = if url_form { split_url(text) } else { split_words(text) }?;
        let tls = match mode.as_deref() {
            None | Some("verify-full") => Tls::VerifyFull,
            Some("verify-ca") => Tls::VerifyCa,
            Some("require") => Tls::Require,
            Some("disable") => Tls::Disable,
            Some(fallback @ ("prefer" | "allow")) => return Err(UrlError::MayFallBack(fallback.to_owned())),
            Some(other) => return Err(UrlError::Unknown(other.to_owned())),
        };
        Ok(Self { tls, rest, url_form })
    }

    pub fn tls(&self) -> Tls {
        self.tls
    }

    /// The connection string a Spin component hands `spin:postgres`. Spin's client
    /// (tokio-postgres with native-tls) checks the server's chain and name whenever it uses
    /// TLS, so `verify-full` is handed over as `require` and `disable` as itself, while
    /// `require` and `verify-ca`, which ask for fewer checks, are refused rather than
    /// connected differently from what was asked.
    pub fn spin_address(&self) -> Result<String, UrlError> {
        match self.tls {
            Tls::Disable => Ok(self.with_sslmode("disable")),
            Tls::VerifyFull => Ok(self.with_sslmode("require")),
            Tls::Require => Err(UrlError::SpinVerifiesFully("require")),
            Tls::VerifyCa => Err(UrlError::SpinVerifiesFully("verify-ca")),
        }
    }

    /// The connection string with `sslmode=<mode>` instead of the one it had.
    pub fn with_sslmode(&self, mode: &str) -> String {
        match (self.url_form, self.rest.contains('?')) {
            (true, true) => format!("{}&sslmode={mode}", self.rest),
            (true, false) => format!("{}?sslmode={mode}", self.rest),
            (false, _) if self.rest.is_empty() => format!("sslmode={mode}"),
            (false, _) => format!("{} sslmode={mode}", self.rest),
        }
    }
}

/// `postgres://…?a=1&sslmode=x&b=2` → (`postgres://…?a=1&b=2`, `x`).
fn split_url(text: &str) -> Result<(String, Option<String>), UrlError> {
    let Some((base, query)) = text.split_once('?') else {
        return Ok((text.to_owned(), None));
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => {
                if mode.replace(value.to_owned()).is_some() {
                    return Err(UrlError::Repeated);
                }
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode))
}

/// `host=db sslmode=x dbname=w` → (`host=db dbname=w`, `x`). Values with spaces are quoted in
/// this form; `sslmode`'s never are.
fn split_words(text: &str) -> Result<(String, Option<String>), UrlError> {
    let mut mode = None;
    let mut kept = Vec::new();
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some(("sslmode", value)) => {
                if mode.replace(value.trim_matches('\'').to_owned()).is_some() {
                    return Err(UrlError::Repeated);
                }
            }
            _ => kept.push(word),
        }
    }
    Ok((kept.join(" "), mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sslmode_means_verify_full_and_fallbacks_are_refused() {
        assert_eq!(DatabaseUrl::parse("postgres://u@db:5432/w").unwrap().tls(), Tls::VerifyFull);
        assert_eq!(DatabaseUrl::parse("host=db dbname=w").unwrap().tls(), Tls::VerifyFull);
        for (mode, tls) in [("disable", Tls::Disable), ("require", Tls::Require), ("verify-ca", Tls::VerifyCa), ("verify-full", Tls::VerifyFull)] {
            assert_eq!(DatabaseUrl::parse(&format!("postgres://db/w?sslmode={mode}")).unwrap().tls(), tls);
            assert_eq!(DatabaseUrl::parse(&format!("host=db sslmode={mode}")).unwrap().tls(), tls);
        }
        for mode in ["prefer", "allow"] {
            assert_eq!(DatabaseUrl::parse(&format!("postgres://db/w?sslmode={mode}")), Err(UrlError::MayFallBack(mode.into())));
        }
        assert!(matches!(DatabaseUrl::parse("postgres://db/w?sslmode=strict"), Err(UrlError::Unknown(_))));
        assert_eq!(DatabaseUrl::parse("postgres://db/w?sslmode=disable&sslmode=require"), Err(UrlError::Repeated));
    }

    #[test]
    fn spin_gets_require_for_verify_full_and_nothing_weaker() {
        assert_eq!(DatabaseUrl::parse("postgres://db/w").unwrap().spin_address().unwrap(), "postgres://db/w?sslmode=require");
        assert_eq!(DatabaseUrl::parse("postgres://db/w?sslmode=disable").unwrap().spin_address().unwrap(), "postgres://db/w?sslmode=disable");
        for mode in ["require", "verify-ca"] {
            let url = DatabaseUrl::parse(&format!("postgres://db/w?sslmode={mode}")).unwrap();
            assert!(matches!(url.spin_address(), Err(UrlError::SpinVerifiesFully(_))), "{mode}");
        }
    }

    #[test]
    fn clients_get_the_string_with_the_mode_they_understand() {
        let url = DatabaseUrl::parse("postgres://u:p@db:5432/w?application_name=x&sslmode=verify-full&connect_timeout=5").unwrap();
        assert_eq!(url.with_sslmode("require"), "postgres://u:p@db:5432/w?application_name=x&connect_timeout=5&sslmode=require");
        let bare = DatabaseUrl::parse("postgres://db/w").unwrap();
        assert_eq!(bare.with_sslmode("require"), "postgres://db/w?sslmode=require");
        let words = DatabaseUrl::parse("host=db user=u sslmode=disable dbname=w").unwrap();
        assert_eq!(words.with_sslmode("disable"), "host=db user=u dbname=w sslmode=disable");
    }
}
