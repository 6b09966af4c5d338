//! Byte searches a word (8 bytes) at a time, for the AMI codec and frame: AMI lines and
//! keys are ~20 and ~10 bytes, too short for `memchr`'s vector code to pay off, so the
//! first words of a line are searched, and keys compared, in plain integer code.

/// Bytes of a `u64` word, for the word-at-a-time search in [`find_byte`].
pub(super) const WORD: usize = 8;
pub(super) const LOW_BITS: u64 = u64::from_le_bytes([0x01; WORD]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; WORD]);
/// [`find_byte`] looks at this many bytes a word at a time, then hands over to `memchr`.
const SHORT_SEARCH: usize = 4 * WORD;

/// The 8 bytes of `bytes` from `at` as a little-endian word (`None` if fewer are left).
#[inline]
pub(super) fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..)?.first_chunk::<WORD>()?;
    Some(u64::from_le_bytes(*word))
}

/// Sets the high bit of each zero byte of `x` (and maybe of bytes after one; never before
/// the first, so the lowest set bit marks the first zero byte).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// Index of the byte marked by the lowest set bit of a [`zero_bytes`] mask.
#[inline]
fn first_byte(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Index of the first `needle` in `hay`. AMI lines and keys are short (~20 and ~10 bytes),
/// too short for `memchr`'s vector code to pay off: the first few words are searched
/// 8 bytes at a time in plain integer code, the rest with `memchr`.
#[inline]
pub(super) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = LOW_BITS * u64::from(needle);
    let mut searched = 0;
    while searched < SHORT_SEARCH {
        let Some(word) = word_at(hay, searched) else {
            break;
        };
        let zero = zero_bytes(word ^ pattern);
        if zero != 0 {
            return Some(searched + first_byte(zero));
        }
        searched += WORD;
    }
    let rest = hay.get(searched..)?;
    let found = if rest.len() < WORD {
        rest.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, rest)
    };
    found.map(|i| searched + i)
}

/// `a == b` for two slices of the same length, a word at a time: AMI keys nearly always
/// come in the case they are asked for, and comparing ~10 bytes this way is much cheaper
/// than a call to `memcmp` or the general `eq_ignore_ascii_case`.
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < WORD {
        // Two 4-byte halves (overlapping for 5 to 7 bytes), or byte by byte below 4.
        let half = |s: &[u8], at: usize| s.get(at..).and_then(<[u8]>::first_chunk::<4>).copied();
        return match n.checked_sub(4) {
            Some(last) => half(a, 0) == half(b, 0) && half(a, last) == half(b, last),
            None => a.iter().zip(b).all(|(x, y)| x == y),
        };
    }
    let mut at = 0;
    while at + WORD < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += WORD;
    }
    // The last word, overlapping the previous one when `n` is not a multiple of 8.
    word_at(a, n - WORD) == word_at(b, n - WORD)
}
