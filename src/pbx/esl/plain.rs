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

    /// Several headers: slot `i` holds the first header named `names[i]`.
    ///
    /// Hot path: a channel event has 150-250 headers (3-6 KB) and the normalizer wants
    /// a handful, several of them absent from most events (`Hangup-Cause` before the
    /// hang-up, `Other-Leg-Unique-ID` on an A-leg), so walking the lines would read every
    /// event to its end. Instead each name is looked for as `\n<name>: ` with a SIMD
    /// substring search (memchr's `memmem`, searchers kept per thread), within the
    /// header block.
    pub fn get_many<const N: usize>(&self, names: [&'static str; N]) -> [Option<Cow<'a, str>>; N] {
        let block = self.header_block();
        FINDERS.with(|cache| {
            let mut cache = cache.borrow_mut();
            names.map(|name| {
                let finder = cache.entry(name).or_insert_with(|| {
                    memchr::memmem::Finder::new(format!("\n{name}: ").as_bytes()).into_owned()
                });
                find_value(block, name, finder).map(decode)
            })
        })
    }

    /// The bytes up to the blank line that ends the headers.
    fn header_block(&self) -> &'a [u8] {
        let bytes = self.bytes;
        match memchr::memmem::find(bytes, b"\n\n") {
            Some(end) => &bytes[..end + 1],
            None => bytes,
        }
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

    fn lines(&self) -> Lines<'a> {
        Lines { rest: self.bytes }
    }
}

/// The `Key: Value` lines of a header block, up to its blank line (the body after it is
/// no header); lines without a colon are passed over.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match memchr::memchr(b'\n', self.rest) {
                Some(nl) => (&self.rest[..nl], &self.rest[nl + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.rest = &[];
                return None;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let key = &line[..colon];
            let mut value = &line[colon + 1..];
            if let [b' ', rest @ ..] = value {
                value = rest;
            }
            if !key.is_empty() {
                return Some((key, value));
            }
        }
    }
}

thread_local! {
    /// A substring searcher per header name looked for (`\n<name>: `).
    /// Names are `'static` (they come from the code, never from input), so this holds
    /// only the few dozen the normalizer asks for.
    static FINDERS: std::cell::RefCell<rustc_hash::FxHashMap<&'static str, memchr::memmem::Finder<'static>>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// The value of the first `name: value` line of `block` (CRLF or LF lines).
fn find_value<'a>(
    block: &'a [u8],
    name: &str,
    finder: &memchr::memmem::Finder<'_>,
) -> Option<&'a [u8]> {
    let start = if block.starts_with(name.as_bytes()) && block[name.len()..].starts_with(b": ") {
        name.len() + 2
    } else {
        finder.find(block)? + finder.needle().len()
    };
    let rest = &block[start..];
    let line = match memchr::memchr(b'\n', rest) {
        Some(nl) => &rest[..nl],
        None => rest,
    };
    Some(line.strip_suffix(b"\r").unwrap_or(line))
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
