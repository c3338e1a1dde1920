//! [`ApiError`]: every refusal the HTTP API can give, each knowing its status, its
//! message (which says what to do) and its full JSON response.

use super::response::Response;
use std::fmt;

/// A request the API refuses, with the status and message it is answered with.
///
/// Every variant becomes `{"error": "<message>"}` with its status through
/// [`ApiError::response`]; the message is escaped by serde_json, so it may quote
/// client input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed; the text says how.
    BadRequest(String),
    /// 400, and the connection is closed afterwards: the body's framing cannot be
    /// trusted (the classic request-smuggling shapes), so nothing after it can be read.
    BadFraming(String),
    /// 401: no token was presented.
    MissingToken,
    /// 401: a token was presented but matches no configured token.
    InvalidToken,
    /// 403: the token is valid but lacks the scope the route needs.
    MissingScope(super::Scope),
    /// 403: refused for another reason (a disallowed `Origin`); the text says which.
    Forbidden(String),
    /// 404: the text names what does not exist.
    NotFound(String),
    /// 405: the path exists but not with this method; the `Allow` list.
    MethodNotAllowed(&'static [&'static str]),
    /// 408: the request head or body did not arrive in time (connection closed).
    RequestTimeout,
    /// 409: the request conflicts with the resource's state; the text says how.
    Conflict(String),
    /// 411: a `POST` without `Content-Length` (connection closed).
    LengthRequired,
    /// 413: the body is larger than the limit, in bytes (connection closed).
    BodyTooLarge(usize),
    /// 415: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 417: an `Expect` other than `100-continue` (connection closed).
    ExpectationFailed,
    /// 429: a limit was reached; retry after that many seconds.
    TooManyRequests {
        /// What was exceeded.
        message: String,
        /// Seconds for the `Retry-After` header.
        retry_after: u32,
    },
    /// 431: the request head is larger than [`super::MAX_HEAD_BYTES`] or has more than
    /// [`super::MAX_HEADERS`] fields (connection closed).
    HeadTooLarge,
    /// 500: a server-side fault; details are for the server's log, not the client.
    Internal,
    /// 501: a `Transfer-Encoding` other than plain `chunked` (connection closed).
    UnsupportedTransferCoding,
    /// 503: the server cannot take this now; retry after that many seconds.
    Unavailable {
        /// Why.
        message: String,
        /// Seconds for the `Retry-After` header.
        retry_after: u32,
    },
}

impl ApiError {
    /// The HTTP status code.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::BadFraming(_) => 400,
            ApiError::MissingToken | ApiError::InvalidToken => 401,
            ApiError::MissingScope(_) | ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::RequestTimeout => 408,
            ApiError::Conflict(_) => 409,
            ApiError::LengthRequired => 411,
            ApiError::BodyTooLarge(_) => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::ExpectationFailed => 417,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::HeadTooLarge => 431,
            ApiError::Internal => 500,
            ApiError::UnsupportedTransferCoding => 501,
            ApiError::Unavailable { .. } => 503,
        }
    }

    /// The message of the JSON body: lowercase, saying what to do.
    #[must_use]
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Whether the runtime must close the connection after answering: the request's
    /// body was not (or cannot be) read in step with its framing, so the next bytes on
    /// the connection are not a trustworthy request head.
    #[must_use]
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ApiError::BadFraming(_)
                | ApiError::RequestTimeout
                | ApiError::LengthRequired
                | ApiError::BodyTooLarge(_)
                | ApiError::ExpectationFailed
                | ApiError::HeadTooLarge
                | ApiError::UnsupportedTransferCoding
        )
    }

    /// The whole answer: status, headers (`Allow`, `WWW-Authenticate`, `Retry-After`,
    /// `Connection: close` where they apply) and the JSON body.
    #[must_use]
    pub fn response(&self) -> Response {
        #[derive(serde::Serialize)]
        struct Body {
            error: String,
        }
        let mut r = Response::json(
            self.status(),
            &Body {
                error: self.message(),
            },
        );
        match self {
            ApiError::MethodNotAllowed(allow) => r.head.push("Allow", allow.join(", ")),
            ApiError::MissingToken => r.head.push("WWW-Authenticate", "Bearer".into()),
            ApiError::InvalidToken => {
                r.head
                    .push("WWW-Authenticate", "Bearer error=\"invalid_token\"".into());
            }
            ApiError::MissingScope(_) => {
                r.head.push(
                    "WWW-Authenticate",
                    "Bearer error=\"insufficient_scope\"".into(),
                );
            }
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => {
                r.head.push("Retry-After", retry_after.to_string());
            }
            _ => {}
        }
        if self.closes_connection() {
            r.head.push("Connection", "close".into());
        }
        r
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(m) | ApiError::BadFraming(m) | ApiError::Forbidden(m) => f.write_str(m),
            ApiError::NotFound(m) | ApiError::Conflict(m) => f.write_str(m),
            ApiError::TooManyRequests { message, .. } | ApiError::Unavailable { message, .. } => {
                f.write_str(message)
            }
            ApiError::MissingToken => f.write_str(
                "missing token: send `Authorization: Bearer <token>` (or `?token=<token>` to watch)",
            ),
            ApiError::InvalidToken => f.write_str("invalid token: check the token you were given"),
            ApiError::MissingScope(scope) => {
                write!(f, "this token lacks the `{scope}` scope: use a token that has it")
            }
            ApiError::MethodNotAllowed(allow) => {
                write!(f, "method not allowed here: use one of {}", allow.join(", "))
            }
            ApiError::RequestTimeout => f.write_str("request not received in time: send it faster"),
            ApiError::LengthRequired => {
                f.write_str("length required: send the body with a `Content-Length` header")
            }
            ApiError::BodyTooLarge(max) => write!(f, "body too large: send at most {max} bytes"),
            ApiError::UnsupportedMediaType => {
                f.write_str("unsupported media type: send `Content-Type: application/json`")
            }
            ApiError::ExpectationFailed => {
                f.write_str("expectation failed: only `Expect: 100-continue` is supported")
            }
            ApiError::HeadTooLarge => write!(
                f,
                "request head too large: send at most {} bytes and {} header fields",
                super::MAX_HEAD_BYTES,
                super::MAX_HEADERS
            ),
            ApiError::Internal => f.write_str("internal server error: see the server log"),
            ApiError::UnsupportedTransferCoding => f.write_str(
                "transfer coding not supported: send the body with `Content-Length` or `Transfer-Encoding: chunked` alone",
            ),
        }
    }
}

impl std::error::Error for ApiError {}
