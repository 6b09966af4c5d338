//! A `text/event-plain` event read in place: the normalizer looks up the few headers it
//! needs without copying the event (a FreeSWITCH channel event carries 150-250 headers,
//! most of them `variable_*`, 3-6 KB in all; copying each into a `String` would cost
//! more than everything else the pipeline does). Values are URL-decoded only when read,
//! and only when they hold a `%`.

use std::borrow::Cow;

/// One event: its header block and, when it has one, its own body (`BACKGROUND_JOB`'s
/// `+OK …`, an `api` result).
#[derive(Debug, Clone, Copy)]
pub struct PlainEvent<'a> {
    /// The header block, a blank line, then the event's own body when it has one.
    bytes: &'a [u8],
}

impl<'a> PlainEvent<'a> {
    /// Takes the body of a `text/event-plain` message. Nothing is read yet: an event the
    /// normalizer does not need costs only the look at its name.
    pub fn parse(bytes: &'a [u8]) -> PlainEvent<'a> {
        PlainEvent { bytes }
    }

    /// `CHANNEL_CREATE`, `CUSTOM`, … `Event-Name` is the first header of every event
    /// FreeSWITCH sends, so this normally reads one line.
    pub fn name(&self) -> Option<&'a str> {
        if let Some(rest) = self.bytes.strip_prefix(b"Event-Name: ") {
            let line = match memchr::memchr(b'\n', rest) {
                Some(nl) => &rest[..nl],
                None => rest,
            };
            return std::str::from_utf8(line).ok().map(str::trim);
        }
        self.raw("Event-Name")
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The event's own body, when it has one.
    pub fn body(&self) -> Option<Cow<'a, str>> {
        let len = self
            .raw("Content-Length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|len| *len > 0)?;
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.bytes[start..]) {
            let line = &self.bytes[start..start + nl];
            start += nl + 1;
            if line.is_empty() || line == b"\r" {
                let rest = &self.bytes[start..];
                return Some(String::from_utf8_lossy(&rest[..len.min(rest.len())]));
            }
        }
        None
    }

    /// The first header named `name`, URL-decoded.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.raw(name).map(decode)
    }

    /// Several headers in one pass over the event: slot `i` holds the first header named
    /// `names[i]`. The pass stops once every slot is filled.
    pub fn get_many<const N: usize>(&self, names: [&str; N]) -> [Option<Cow<'a, str>>; N] {
        let mut raw: [Option<&'a [u8]>; N] = [None; N];
        let mut missing = N;
        for (key, value) in self.lines() {
            if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
                if raw[i].is_none() {
                    raw[i] = Some(value);
                    missing -= 1;
                    if missing == 0 {
                        break;
                    }
                }
            }
        }
        raw.map(|v| v.map(decode))
    }

    /// Every header, decoded (for tools and tests; the hot path uses `get_many`).
    pub fn headers(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        self.lines()
            .map(|(k, v)| (String::from_utf8_lossy(k), decode(v)))
    }

    fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.lines()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }

    fn lines(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        // The header block ends at the first blank line; the body after it is no header.
        self.bytes
            .split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .take_while(|line| !line.is_empty())
            .filter_map(|line| {
                let colon = memchr::memchr(b':', line)?;
                let key = &line[..colon];
                let mut value = &line[colon + 1..];
                if let [b' ', rest @ ..] = value {
                    value = rest;
                }
                (!key.is_empty()).then_some((key, value))
            })
    }
}

/// URL-decodes a value (FreeSWITCH encodes with `%XX` and never uses `+` for a space:
/// `+79161234567` stays as it is).
fn decode(raw: &[u8]) -> Cow<'_, str> {
    if memchr::memchr(b'%', raw).is_none() {
        return String::from_utf8_lossy(raw);
    }
    match percent_encoding::percent_decode(raw).decode_utf8_lossy() {
        Cow::Borrowed(_) => String::from_utf8_lossy(raw),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &[u8] = b"Event-Name: CHANNEL_CREATE\nCore-UUID: abc\nChannel-Name: sofia/external/%2B79161234567%40127.0.0.1\nCaller-Caller-ID-Number: +79161234567\nvariable_x: a%20b\n\n";

    #[test]
    fn name_and_headers_are_read_in_place_and_decoded() {
        let ev = PlainEvent::parse(EVENT);
        assert_eq!(ev.name(), Some("CHANNEL_CREATE"));
        assert_eq!(
            ev.get("Channel-Name").as_deref(),
            Some("sofia/external/+79161234567@127.0.0.1")
        );
        let [num, x, none] = ev.get_many(["Caller-Caller-ID-Number", "variable_x", "Nope"]);
        assert_eq!(num.as_deref(), Some("+79161234567"));
        assert!(matches!(num, Some(Cow::Borrowed(_))), "no copy without %");
        assert_eq!(x.as_deref(), Some("a b"));
        assert_eq!(none, None);
        assert_eq!(ev.body(), None);
    }

    #[test]
    fn an_inner_body_is_read_by_its_length() {
        let bytes =
            b"Event-Name: BACKGROUND_JOB\nJob-UUID: 1\nContent-Length: 14\n\n+OK 1234-5678\nnoise";
        let ev = PlainEvent::parse(bytes);
        assert_eq!(ev.body().as_deref(), Some("+OK 1234-5678\n"));
        assert_eq!(ev.get("Job-UUID").as_deref(), Some("1"));
    }

    #[test]
    fn garbage_gives_no_name_and_no_panic() {
        for bytes in [
            &b""[..],
            b"\n\n",
            b"no colon here",
            b"Content-Length: 99\n\nshort",
            b":\n",
        ] {
            let ev = PlainEvent::parse(bytes);
            assert_eq!(ev.name(), None);
            let _ = ev.body();
        }
    }
}
