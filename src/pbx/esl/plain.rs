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

    /// Several headers in one pass: slot `i` holds the first header named `names[i]`.
    ///
    /// Hot path: a channel event has 150-250 headers (3-6 KB) and the normalizer wants a
    /// handful, several of them absent from most events (`Hangup-Cause` before the
    /// hang-up, `Other-Leg-Unique-ID` on an A-leg), so the pass usually reads the whole
    /// block. It finds line ends and colons together in one SIMD scan (`memchr2`); a
    /// line whose name has a length no wanted name has is passed over after one bit
    /// test, without comparing bytes. (FreeSWITCH URL-encodes values, so the first colon
    /// of a line ends its name; later ones are ignored all the same.)
    pub fn get_many<const N: usize>(&self, names: [&str; N]) -> [Option<Cow<'a, str>>; N] {
        let mut raw: [Option<&'a [u8]>; N] = [None; N];
        self.scan(&names, &mut raw);
        raw.map(|v| v.map(decode))
    }

    /// [`get_many`](Self::get_many) for a list of names known only at run time (the
    /// configured campaign variables); slot `i` of the answer is `names[i]`'s.
    pub fn get_each(&self, names: &[&str]) -> Vec<Option<Cow<'a, str>>> {
        let mut raw: Vec<Option<&'a [u8]>> = vec![None; names.len()];
        self.scan(names, &mut raw);
        raw.into_iter().map(|v| v.map(decode)).collect()
    }

    /// The one pass behind `get_many` and `get_each`: fills `raw[i]` with the raw value
    /// of the first header named `names[i]` (at most 32 names).
    ///
    /// Per line: one `memchr` for its end, then only the wanted names that begin with
    /// the line's first byte are compared (a `variable_*` line is compared only with the
    /// wanted `variable_*` names), each first by the byte where its colon would be.
    fn scan(&self, names: &[&str], raw: &mut [Option<&'a [u8]>]) {
        let bytes = self.bytes;
        let names = &names[..names.len().min(32)];
        let mut by_first = [0u32; 256];
        for (i, n) in names.iter().enumerate() {
            if let Some(&f) = n.as_bytes().first() {
                by_first[f as usize] |= 1 << i;
            }
        }
        let mut missing = names.len();
        let mut start = 0;
        while start < bytes.len() {
            let end = line_end(bytes, start);
            let line = &bytes[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(&first) = line.first() else {
                // The blank line: the headers end here.
                return;
            };
            let mut candidates = by_first[first as usize];
            while candidates != 0 {
                let i = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                let name = names[i].as_bytes();
                if raw[i].is_none()
                    && line.get(name.len()) == Some(&b':')
                    && &line[..name.len()] == name
                {
                    let mut value = &line[name.len() + 1..];
                    if let [b' ', rest @ ..] = value {
                        value = rest;
                    }
                    raw[i] = Some(value);
                    missing -= 1;
                    if missing == 0 {
                        return;
                    }
                }
            }
            start = end + 1;
        }
    }

    /// Several headers read from the end of the block: slot `i` holds the last header
    /// named `names[i]`. For the headers an event adds after the channel's (FreeSWITCH
    /// puts `Application`, `Record-File-Path`, `CC-*` and `VM-*` after the 70-130
    /// `variable_*` lines), where reading from the start would walk the whole event.
    pub fn get_many_from_end<const N: usize>(&self, names: [&str; N]) -> [Option<Cow<'a, str>>; N] {
        let bytes = self.bytes;
        // The header block ends at its blank line (a body may follow).
        let mut end = match memchr::memmem::find(bytes, b"\n\n") {
            Some(blank) => blank,
            None => bytes.len(),
        };
        let mut raw: [Option<&'a [u8]>; N] = [None; N];
        let mut missing = names.len();
        while end > 0 && missing > 0 {
            let start = memchr::memrchr(b'\n', &bytes[..end]).map_or(0, |nl| nl + 1);
            let line = &bytes[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = memchr::memchr(b':', line) {
                let key = &line[..colon];
                if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
                    if raw[i].is_none() {
                        let mut value = &line[colon + 1..];
                        if let [b' ', rest @ ..] = value {
                            value = rest;
                        }
                        raw[i] = Some(value);
                        missing -= 1;
                    }
                }
            }
            end = start.saturating_sub(1);
            if start == 0 {
                break;
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

/// The index of the first `\n` at or after `from` (or the end). Header lines are short
/// (30 bytes on average), too short for a SIMD search to pay for its set-up on each
/// line, so this reads 8 bytes at a time (the classic "has a zero byte" test on the
/// bytes XOR `\n`: the lowest flagged byte is exactly the first newline).
#[inline]
fn line_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| i + p)
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
    fn get_many_takes_the_first_header_of_each_name_and_stops_at_the_blank_line() {
        let ev = PlainEvent::parse(
            b"Event-Name: X\r\nA: 1\r\nB: a:b:c\r\nA: 2\r\nno colon\r\n: empty name\r\nC:3\r\n\r\nD: body",
        );
        let [a, b, c, d] = ev.get_many(["A", "B", "C", "D"]);
        assert_eq!(a.as_deref(), Some("1"), "the first A");
        assert_eq!(
            b.as_deref(),
            Some("a:b:c"),
            "colons after the first are the value's"
        );
        assert_eq!(c.as_deref(), Some("3"), "no space after the colon");
        assert_eq!(d, None, "the body is no header");
        let ev = PlainEvent::parse(b"Event-Name: X\nLast: at the end");
        let [last] = ev.get_many(["Last"]);
        assert_eq!(
            last.as_deref(),
            Some("at the end"),
            "a last line without a newline"
        );
    }

    #[test]
    fn get_many_from_end_reads_the_last_headers_first_and_not_the_body() {
        let ev = PlainEvent::parse(
            b"Event-Name: CHANNEL_EXECUTE\nUnique-ID: u\nvariable_a: 1\nApplication: set\r\nApplication-Data: x%3Dy\n\nApplication: body",
        );
        let [app, data, uuid, none] =
            ev.get_many_from_end(["Application", "Application-Data", "Unique-ID", "Nope"]);
        assert_eq!(app.as_deref(), Some("set"));
        assert_eq!(data.as_deref(), Some("x=y"));
        assert_eq!(uuid.as_deref(), Some("u"));
        assert_eq!(none, None);
        let [first] = PlainEvent::parse(b"Only: one").get_many_from_end(["Only"]);
        assert_eq!(first.as_deref(), Some("one"));
    }

    #[test]
    fn line_end_finds_the_first_newline_at_any_offset() {
        let text = b"ab\ncdefghijklmnop\nq\n\nrstuvwxyz0123456789";
        for from in 0..text.len() {
            let want = text[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |p| from + p);
            assert_eq!(line_end(text, from), want, "from {from}");
        }
        // Bytes just above and below `\n` are no newline.
        assert_eq!(line_end(b"\x09\x0b\x8a\x0a", 0), 3);
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
