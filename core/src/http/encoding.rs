//! Content-coding negotiation (RFC 9110 §12.5.3) for the two long routes,
//! `/jobs/{id}/events` and `/jobs/{id}/log`: gzip when the request's
//! `Accept-Encoding` allows it, identity otherwise. Other routes answer small JSON
//! and stay identity.
//!
//! Rules:
//! 1. No `Accept-Encoding` field, an empty one, or one that does not parse (a bad
//!    `q`): identity. A server may always answer identity unless the client refused
//!    it, and a garbled field is no refusal we can trust.
//! 2. A coding's weight is its own entry's `q` (`gzip` or `x-gzip`), else the `*`
//!    entry's, else 0. Identity with no weight of its own is still acceptable (it
//!    is refused only by `identity;q=0`, or `*;q=0` without an `identity` entry),
//!    but is the least preferred: any gzip weight above 0 beats it.
//! 3. gzip is chosen when its weight is above 0 and at least identity's: on a tie we
//!    compress, since that is why a client lists it.
//! 4. Several `Accept-Encoding` fields are one list (RFC 9110 §5.3).

use super::{Request, ResponseHead};

/// The coding of a response body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentCoding {
    /// No coding.
    #[default]
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

impl ContentCoding {
    /// Adds this coding's fields to a head on a negotiated route: `Content-Encoding`
    /// for gzip, and `Vary: Accept-Encoding` always (the answer depends on that
    /// field, so caches must key on it, identity answers included).
    /// They go before `Transfer-Encoding`, which stays the head's last field.
    pub fn apply(self, head: &mut ResponseHead) {
        let at = head
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .unwrap_or(head.headers.len());
        head.headers.insert(at, ("Vary", "Accept-Encoding".into()));
        if let Some(v) = self.header_value() {
            head.headers.insert(at, ("Content-Encoding", v.into()));
        }
    }

    /// The `Content-Encoding` value, `None` for identity (no field is sent).
    #[must_use]
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            ContentCoding::Identity => None,
            ContentCoding::Gzip => Some("gzip"),
        }
    }
}

/// Chooses the coding for a response to `req` (see the module rules).
#[must_use]
pub fn negotiate(req: &Request<'_>) -> ContentCoding {
    let mut fields = req.headers_all("accept-encoding").peekable();
    if fields.peek().is_none() {
        return ContentCoding::Identity;
    }
    let mut joined = Vec::new();
    for v in fields {
        joined.extend_from_slice(v);
        joined.push(b',');
    }
    std::str::from_utf8(&joined)
        .ok()
        .and_then(choose)
        .unwrap_or(ContentCoding::Identity)
}

/// The weights of `gzip`, `identity` and `*` in an `Accept-Encoding` value, in
/// thousandths; `None` if the value does not parse.
fn weights(value: &str) -> Option<[Option<u16>; 3]> {
    let mut w = [None; 3];
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        if !coding.bytes().all(is_tchar) {
            return None;
        }
        let mut q = 1000;
        for param in parts {
            let (name, val) = param.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(val.trim())?;
            }
        }
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            0
        } else if coding.eq_ignore_ascii_case("identity") {
            1
        } else if coding == "*" {
            2
        } else {
            continue;
        };
        // A coding listed twice: the first entry counts.
        w[slot].get_or_insert(q);
    }
    Some(w)
}

fn choose(value: &str) -> Option<ContentCoding> {
    let [gzip, identity, star] = weights(value)?;
    let gzip = gzip.or(star).unwrap_or(0);
    let identity = identity.or(star).unwrap_or(0);
    Some(if gzip > 0 && gzip >= identity {
        ContentCoding::Gzip
    } else {
        ContentCoding::Identity
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContentCoding::{Gzip, Identity};

    fn pick(fields: &[&str]) -> ContentCoding {
        let headers: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|v| ("Accept-Encoding", v.as_bytes()))
            .collect();
        negotiate(&Request {
            method: "GET",
            target: "/jobs/x/events",
            headers: &headers,
        })
    }

    #[test]
    fn negotiation_table() {
        let cases: &[(&[&str], ContentCoding)] = &[
            (&[], Identity),
            (&[""], Identity),
            (&["gzip"], Gzip),
            (&["GZIP"], Gzip),
            (&["x-gzip"], Gzip),
            (&["gzip, deflate, br, zstd"], Gzip), // Chromium's
            (&["deflate, br"], Identity),
            (&["br", "gzip"], Gzip), // two fields are one list
            (&["gzip;q=0"], Identity),
            (&["gzip; q=0.000"], Identity),
            (&["gzip;q=0.001"], Gzip),
            (&["gzip;q=1.000"], Gzip),
            (&["gzip;q=0.5, identity;q=0.8"], Identity),
            (&["gzip;q=0.8, identity;q=0.5"], Gzip),
            (&["gzip;q=0.5, identity;q=0.5"], Gzip), // a tie compresses
            (&["*"], Gzip),
            (&["*;q=0"], Identity), // nothing acceptable: identity anyway
            (&["*;q=0.3, identity;q=0.9"], Identity),
            (&["*, gzip;q=0"], Identity), // gzip's own entry beats `*`
            (&["identity;q=0, gzip"], Gzip),
            (&["identity;q=0"], Identity), // gzip not offered: still identity
            (&["identity"], Identity),
            (&["gzip;q=2"], Identity),      // unparseable: identity
            (&["gzip;q=0.1234"], Identity), // too many digits
            (&["gzip;q"], Identity),        // a parameter without a value
            (&["gzip;q=", "br"], Identity), // one bad field spoils the list
            (&["g zip"], Identity),         // not a token
            (&[" gzip ; q=0.9 ,"], Gzip),   // whitespace and empty elements
            (&["gzip;level=1"], Gzip),      // unknown parameters ignored
            (&["gzip, gzip;q=0"], Gzip),    // the first entry counts
        ];
        for (fields, want) in cases {
            assert_eq!(pick(fields), *want, "{fields:?}");
        }
        assert_eq!(Gzip.header_value(), Some("gzip"));
        assert_eq!(Identity.header_value(), None);
    }

    #[test]
    fn non_utf8_is_identity() {
        let headers: &[(&str, &[u8])] = &[("accept-encoding", b"gzip\xff")];
        let req = Request {
            method: "GET",
            target: "/",
            headers,
        };
        assert_eq!(negotiate(&req), Identity);
    }
}
