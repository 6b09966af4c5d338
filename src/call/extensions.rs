//! Which endpoints are the office's own extensions, as opposed to trunks and outside
//! numbers: the configured ranges (`[[pbx]] internal_extensions`) and the mapped
//! employees. The tracker judges every call's direction by it.

/// An inclusive range of numeric extensions; a single extension is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionRange {
    pub first: u64,
    pub last: u64,
}

impl ExtensionRange {
    /// `"100-199"` or `"2001"`.
    pub fn parse(text: &str) -> Option<ExtensionRange> {
        let digits = |t: &str| {
            let t = t.trim();
            (!t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u64>().ok())
                .flatten()
        };
        match text.split_once('-') {
            Some((a, b)) => {
                let (first, last) = (digits(a)?, digits(b)?);
                (first <= last).then_some(ExtensionRange { first, last })
            }
            None => digits(text).map(|n| ExtensionRange { first: n, last: n }),
        }
    }

    pub fn contains(&self, extension: &str) -> bool {
        !extension.is_empty()
            && extension.len() <= 18
            && extension.bytes().all(|b| b.is_ascii_digit())
            && extension
                .parse::<u64>()
                .is_ok_and(|n| (self.first..=self.last).contains(&n))
    }
}

/// Which endpoints are employee extensions (as opposed to trunks): the configured
/// `internal_extensions` ranges plus the mapped extensions. Until ranges are configured,
/// an endpoint also counts as internal when it is a short all-digit name (2 to 6
/// digits), which is what office PBXs use for extensions and what trunk names and
/// outside numbers are not.
#[derive(Debug, Clone, Default)]
pub struct InternalExtensions {
    pub known: std::collections::BTreeSet<String>,
    pub ranges: Vec<ExtensionRange>,
}

impl InternalExtensions {
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        InternalExtensions {
            known: known.into_iter().collect(),
            ranges: Vec::new(),
        }
    }

    pub fn with_ranges(mut self, ranges: Vec<ExtensionRange>) -> Self {
        self.ranges = ranges;
        self
    }

    pub fn contains(&self, endpoint: &str) -> bool {
        if self.known.contains(endpoint) {
            return true;
        }
        if self.ranges.is_empty() {
            (2..=6).contains(&endpoint.len()) && endpoint.bytes().all(|b| b.is_ascii_digit())
        } else {
            self.ranges.iter().any(|r| r.contains(endpoint))
        }
    }
}
