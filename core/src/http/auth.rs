//! Bearer tokens with scopes: who may start jobs and who may watch them.
//!
//! Rules:
//! 1. No tokens configured: everyone may do everything (the server refuses to listen
//!    on a non-loopback address without tokens; that check lives with the config).
//! 2. `Authorization: Bearer <token>` (scheme case-insensitive) is read first; more
//!    than one `Authorization` field is 400.
//! 3. Without that header, `?token=` counts, and only for [`Scope::Watch`]: browser
//!    EventSource cannot send headers, while starting jobs always can.
//! 4. No token: 401 `WWW-Authenticate: Bearer`. Unknown token: 401. Known token
//!    without the scope: 403.
//! 5. A share link (`?sig=`, see [`crate::link`]) stands in for a token only on
//!    one job's status, events and log, and only when no token is presented; the
//!    registry checks the signature (it holds the key and the time).

use super::{ApiError, Query, Request, Route};
use std::fmt;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Start and stop jobs (`POST /jobs`, `DELETE /jobs/{id}`).
    Start,
    /// Read commands, jobs, their streams and logs, and metrics.
    Watch,
    /// Make share links to a job (`POST /jobs/{id}/links`).
    Share,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Start => "start",
            Scope::Watch => "watch",
            Scope::Share => "share",
        })
    }
}

/// The scope a route needs; `None` for the open routes: the viewer page (it holds no
/// data; it asks for a token itself), `/healthz` (for load balancers) and preflights
/// (browsers send them without credentials, by the Fetch standard).
#[must_use]
pub fn required_scope(route: Route) -> Option<Scope> {
    match route {
        Route::Index | Route::Healthz | Route::Preflight => None,
        Route::CreateJob | Route::StopJob(_) => Some(Scope::Start),
        Route::CreateLink(_) => Some(Scope::Share),
        Route::Commands
        | Route::ListJobs
        | Route::JobStatus(_)
        | Route::JobEvents(_)
        | Route::JobLog(_)
        | Route::Metrics => Some(Scope::Watch),
    }
}

/// Why a configured token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token at this index is empty (it would match `Bearer ` with nothing).
    Empty(usize),
    /// The token at this index has a character a Bearer token cannot carry.
    BadCharacter(usize),
    /// The token at this index repeats an earlier one.
    Duplicate(usize),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Empty(i) => write!(f, "token {i} is empty: use a long random string"),
            TokenError::BadCharacter(i) => write!(
                f,
                "token {i} has a character a Bearer token cannot carry: use letters, digits and -._~+/ (then optional =)"
            ),
            TokenError::Duplicate(i) => write!(f, "token {i} is listed twice: list each token once"),
        }
    }
}

impl std::error::Error for TokenError {}

/// What one configured token may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// [`Scope::Start`].
    pub start: bool,
    /// [`Scope::Watch`].
    pub watch: bool,
    /// [`Scope::Share`].
    pub share: bool,
}

impl Grant {
    fn has(self, scope: Scope) -> bool {
        match scope {
            Scope::Start => self.start,
            Scope::Watch => self.watch,
            Scope::Share => self.share,
        }
    }
}

#[derive(Clone)]
struct Token {
    secret: Vec<u8>,
    grant: Grant,
}

/// The configured tokens and the check every request passes.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Vec<Token>,
}

impl fmt::Debug for Auth {
    // Never print secrets, even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// RFC 6750 `b64token`: what a Bearer credential may contain.
fn is_b64token(t: &[u8]) -> bool {
    let body_end = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body_end > 0
        && t[..body_end].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

impl Auth {
    /// Builds the check from `(token, what it may do)` pairs; an empty slice turns
    /// authentication off.
    ///
    /// # Errors
    /// [`TokenError`] for an empty token, one with characters a Bearer token cannot
    /// carry, or a repeated one.
    pub fn new(tokens: &[(String, Grant)]) -> Result<Auth, TokenError> {
        let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
        for (i, (secret, grant)) in tokens.iter().enumerate() {
            if secret.is_empty() {
                return Err(TokenError::Empty(i));
            }
            if !is_b64token(secret.as_bytes()) {
                return Err(TokenError::BadCharacter(i));
            }
            if out.iter().any(|t| t.secret == secret.as_bytes()) {
                return Err(TokenError::Duplicate(i));
            }
            out.push(Token {
                secret: secret.as_bytes().to_vec(),
                grant: *grant,
            });
        }
        Ok(Auth { tokens: out })
    }

    /// Whether any token is configured.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks that `req` may do what needs `needed` (see the rules in this module).
    ///
    /// The presented token is compared with every configured token, each comparison
    /// reading every byte of the presented token (no early exit), so the time taken
    /// depends on the presented token's length and the number of tokens, not on which
    /// bytes match or on configured tokens' lengths. What is not constant-time: the
    /// answer itself (401 vs 403 vs success takes different paths, which reveals no
    /// more than the status does) and the percent-decoding of `?token=`.
    ///
    /// # Errors
    /// [`ApiError::MissingToken`], [`ApiError::InvalidToken`] (401),
    /// [`ApiError::MissingScope`] (403), [`ApiError::BadRequest`] for two
    /// `Authorization` fields.
    pub fn authorize(
        &self,
        req: &Request<'_>,
        query: &Query,
        needed: Scope,
    ) -> Result<(), ApiError> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let fields: Vec<&[u8]> = req.headers_all("authorization").collect();
        let presented: &[u8] = match fields[..] {
            [field] => bearer(field).ok_or(ApiError::InvalidToken)?,
            [] => match query.get("token") {
                Some(t) if needed == Scope::Watch => t.as_bytes(),
                _ => return Err(ApiError::MissingToken),
            },
            _ => {
                return Err(ApiError::BadRequest(
                    "more than one Authorization field: send one".into(),
                ))
            }
        };
        let (mut known, mut has) = (false, false);
        for t in &self.tokens {
            let eq = ct_eq(presented, &t.secret);
            // `&`/`|` on bools do not short-circuit: every token costs the same.
            known |= eq;
            has |= eq & t.grant.has(needed);
        }
        match (known, has) {
            (false, _) => Err(ApiError::InvalidToken),
            (true, false) => Err(ApiError::MissingScope(needed)),
            (true, true) => Ok(()),
        }
    }
}

/// The credential of an `Authorization: Bearer <token>` field; `None` for another
/// scheme or a malformed value.
fn bearer(field: &[u8]) -> Option<&[u8]> {
    let space = field.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = field.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    let token = &rest[start..];
    let end = token
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let token = &token[..end];
    is_b64token(token).then_some(token)
}

/// Compares without exiting early. The loop runs over the presented bytes only and
/// reads the configured secret cyclically, so neither the secret's bytes nor its
/// length change how long it takes. `secret` is never empty ([`Auth::new`]).
fn ct_eq(presented: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut diff: u8 = 0;
    for (i, &b) in presented.iter().enumerate() {
        diff |= b ^ secret[i % secret.len()];
    }
    let diff = std::hint::black_box(diff);
    (diff == 0) & (presented.len() == secret.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a [u8])];
    use crate::id::JobId;

    fn auth() -> Auth {
        let g = |start, watch| Grant {
            start,
            watch,
            share: false,
        };
        Auth::new(&[
            ("starter-token".into(), g(true, false)),
            ("watcher-token".into(), g(false, true)),
            ("both-token".into(), g(true, true)),
            ("none-token".into(), g(false, false)),
        ])
        .unwrap()
    }

    #[test]
    fn matrix_token_scope_and_place() {
        use Scope::{Start, Watch};
        // (Authorization field, ?token=, scope, status or 0 for allowed)
        let cases: &[(Option<&str>, Option<&str>, Scope, u16)] = &[
            (None, None, Start, 401),
            (None, None, Watch, 401),
            (Some("Bearer starter-token"), None, Start, 0),
            (Some("Bearer starter-token"), None, Watch, 403),
            (Some("Bearer watcher-token"), None, Start, 403),
            (Some("Bearer watcher-token"), None, Watch, 0),
            (Some("Bearer both-token"), None, Start, 0),
            (Some("Bearer both-token"), None, Watch, 0),
            (Some("Bearer none-token"), None, Start, 403),
            (Some("Bearer none-token"), None, Watch, 403),
            (Some("bearer both-token"), None, Start, 0),
            (Some("BEARER   both-token  "), None, Start, 0),
            (Some("Bearer wrong"), None, Watch, 401),
            (Some("Bearer both-toke"), None, Watch, 401),
            (Some("Bearer both-tokenn"), None, Watch, 401),
            (Some("Bearer "), None, Watch, 401),
            (Some("Bearer"), None, Watch, 401),
            (Some("Bearer both token"), None, Watch, 401),
            (Some("Basic Ym90aC10b2tlbg=="), None, Watch, 401),
            (Some("both-token"), None, Watch, 401),
            // query tokens only watch
            (None, Some("watcher-token"), Watch, 0),
            (None, Some("both-token"), Watch, 0),
            (None, Some("both-token"), Start, 401),
            (None, Some("starter-token"), Watch, 403),
            (None, Some("wrong"), Watch, 401),
            (None, Some(""), Watch, 401),
            // the header wins over the query
            (Some("Bearer wrong"), Some("both-token"), Watch, 401),
            (Some("Bearer both-token"), Some("wrong"), Watch, 0),
        ];
        let a = auth();
        for (header, token, scope, want) in cases {
            let headers: Vec<(&str, &[u8])> = header
                .iter()
                .map(|h| ("Authorization", h.as_bytes()))
                .collect();
            let req = Request {
                method: "GET",
                target: "/",
                headers: &headers,
            };
            let query = match token {
                Some(t) => Query::parse(&format!("token={t}")).unwrap(),
                None => Query::default(),
            };
            let got = a.authorize(&req, &query, *scope).map_err(|e| e.status());
            let want = if *want == 0 { Ok(()) } else { Err(*want) };
            assert_eq!(got, want, "{header:?} {token:?} {scope}");
        }
    }

    #[test]
    fn errors_carry_www_authenticate() {
        let a = auth();
        let req = Request {
            method: "GET",
            target: "/",
            headers: &[],
        };
        let e = a
            .authorize(&req, &Query::default(), Scope::Watch)
            .unwrap_err();
        assert_eq!(e, ApiError::MissingToken);
        assert_eq!(e.response().head.get("WWW-Authenticate"), Some("Bearer"));
        let h: Fields<'_> = &[("Authorization", b"Bearer watcher-token")];
        let req = Request {
            method: "POST",
            target: "/jobs",
            headers: h,
        };
        let e = a
            .authorize(&req, &Query::default(), Scope::Start)
            .unwrap_err();
        assert_eq!(e, ApiError::MissingScope(Scope::Start));
        assert_eq!(
            e.response().head.get("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\"")
        );
        assert!(e.message().contains("`start`"), "{e}");
    }

    #[test]
    fn two_authorization_fields_are_refused() {
        let h: Fields<'_> = &[
            ("Authorization", b"Bearer both-token"),
            ("authorization", b"Bearer x"),
        ];
        let req = Request {
            method: "GET",
            target: "/",
            headers: h,
        };
        assert_eq!(
            auth()
                .authorize(&req, &Query::default(), Scope::Watch)
                .map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn no_tokens_means_open() {
        let a = Auth::new(&[]).unwrap();
        assert!(!a.is_enabled());
        let h: Fields<'_> = &[("Authorization", b"Bearer anything")];
        let req = Request {
            method: "POST",
            target: "/jobs",
            headers: h,
        };
        assert_eq!(a.authorize(&req, &Query::default(), Scope::Start), Ok(()));
    }

    #[test]
    fn token_config_is_validated() {
        let all = Grant {
            start: true,
            watch: true,
            share: true,
        };
        let t = |s: &str| (s.to_string(), all);
        assert_eq!(Auth::new(&[t("")]).unwrap_err(), TokenError::Empty(0));
        assert_eq!(
            Auth::new(&[t("ok"), t("a b")]).unwrap_err(),
            TokenError::BadCharacter(1)
        );
        assert_eq!(
            Auth::new(&[t("===")]).unwrap_err(),
            TokenError::BadCharacter(0)
        );
        assert_eq!(
            Auth::new(&[t("a\r\n")]).unwrap_err(),
            TokenError::BadCharacter(0)
        );
        assert_eq!(
            Auth::new(&[t("x"), t("x")]).unwrap_err(),
            TokenError::Duplicate(1)
        );
        assert!(Auth::new(&[t("aZ09-._~+/==")]).is_ok());
        assert!(
            !format!("{:?}", auth()).contains("token-"),
            "Debug must not print secrets"
        );
    }

    #[test]
    fn ct_eq_table() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"ab", b"abc"));
        assert!(
            !ct_eq(b"abcabc", b"abc"),
            "cyclic reading must not match repeats"
        );
        assert!(!ct_eq(b"", b"abc"));
        assert!(!ct_eq(b"", b""));
    }

    #[test]
    fn scopes_per_route() {
        let id = JobId::from_random([7; 16]);
        let cases = [
            (Route::Index, None),
            (Route::Healthz, None),
            (Route::Preflight, None),
            (Route::CreateJob, Some(Scope::Start)),
            (Route::StopJob(id), Some(Scope::Start)),
            (Route::Commands, Some(Scope::Watch)),
            (Route::ListJobs, Some(Scope::Watch)),
            (Route::JobStatus(id), Some(Scope::Watch)),
            (Route::JobEvents(id), Some(Scope::Watch)),
            (Route::JobLog(id), Some(Scope::Watch)),
            (Route::Metrics, Some(Scope::Watch)),
        ];
        for (route, want) in cases {
            assert_eq!(required_scope(route), want, "{route:?}");
        }
    }
}
