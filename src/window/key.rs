//! Key names: short ones inline, so a lookup compares without another cache miss and a
//! denial names its key without allocating.

use std::fmt;
use std::ops::Deref;

/// Longest key stored inline (a `Key` is 24 bytes either way).
const INLINE: usize = 22;

/// String equality that skips the comparison when both are the same slice (a limiter built
/// with the key it then checks) and compares short keys without a call to `memcmp`.
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    if a.len() <= 24 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    a == b
}

#[derive(Clone)]
pub(crate) enum Key {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl Key {
    pub(crate) fn new(key: &str) -> Self {
        if key.len() <= INLINE {
            let mut b = [0; INLINE];
            b[..key.len()].copy_from_slice(key.as_bytes());
            Self::Inline(key.len() as u8, b)
        } else {
            Self::Heap(key.into())
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline(n, b) => &b[..usize::from(*n)],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    #[inline]
    pub(crate) fn is(&self, key: &str) -> bool {
        same_bytes(self.bytes(), key.as_bytes())
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Inline(..) => std::str::from_utf8(self.bytes()).expect("stored from a str"),
            Self::Heap(s) => s,
        }
    }

    /// Bytes held outside the key itself.
    pub(crate) fn heap_len(&self) -> usize {
        match self {
            Self::Inline(..) => 0,
            Self::Heap(s) => s.len(),
        }
    }
}

/// A key named in a [`LimitExceeded`](crate::window::LimitExceeded) or a [`Rule`](crate::window::Rule).
/// Dereferences to `str`; names of up to 22 bytes are stored without allocating.
///
/// ```
/// use accrue::window::KeyName;
///
/// let k = KeyName::from("api:alice");
/// assert_eq!(&*k, "api:alice");
/// assert_eq!(k, "api:alice");
/// assert_eq!(k.to_string(), "api:alice");
/// ```
#[derive(Clone)]
pub struct KeyName(pub(crate) Key);

impl Deref for KeyName {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        self
    }
}

impl From<&str> for KeyName {
    fn from(s: &str) -> Self {
        Self(Key::new(s))
    }
}

impl PartialEq for KeyName {
    fn eq(&self, other: &Self) -> bool {
        self.0.bytes() == other.0.bytes()
    }
}

impl Eq for KeyName {}

impl PartialEq<str> for KeyName {
    fn eq(&self, other: &str) -> bool {
        self.0.is(other)
    }
}

impl PartialEq<&str> for KeyName {
    fn eq(&self, other: &&str) -> bool {
        self.0.is(other)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}
