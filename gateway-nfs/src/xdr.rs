//! XDR (RFC 4506): big-endian 4-byte units, variable-length data prefixed by its length and
//! padded with zeros to a multiple of 4. [`Reader`] decodes a borrowed buffer without copying
//! (every length read from the wire is checked against a caller-given limit and against the bytes
//! left before anything is allocated); [`Writer`] appends to a `Vec<u8>`. [`Pack`] and [`Unpack`]
//! are the traits the protocol types implement.

use thiserror::Error;

/// Why decoding XDR data failed. Every variant means "garbage arguments" to an RPC server.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XdrError {
    /// The data ended before the value did.
    #[error("XDR data truncated")]
    Truncated,
    /// A variable-length item was longer than its limit (checked before allocating).
    #[error("XDR {what} of {len} bytes or items exceeds the limit of {max}")]
    TooLong {
        /// The item being decoded.
        what: &'static str,
        /// The length read from the wire.
        len: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// A discriminant, enum or boolean had a value the protocol does not define.
    #[error("XDR {what} has an invalid value {value}")]
    BadValue {
        /// The item being decoded.
        what: &'static str,
        /// The value read from the wire.
        value: u32,
    },
    /// Bytes were left after the value (see [`decode`]).
    #[error("{0} trailing bytes after the XDR value")]
    Trailing(usize),
}

/// Number of zero bytes that pad `n` bytes of data to a multiple of 4.
pub const fn pad_len(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Encoded size of `n` bytes of opaque data without its length word: `n` plus padding.
pub const fn padded_len(n: usize) -> usize {
    n + pad_len(n)
}

/// A cursor over an XDR-encoded buffer; decoded opaque data borrows from the buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            rest: buf,
            total: buf.len(),
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.total - self.rest.len()
    }

    /// The bytes not yet consumed, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Fails with [`XdrError::Trailing`] unless every byte was consumed.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(XdrError::Trailing(n)),
        }
    }

    /// Consumes exactly `n` bytes (no padding).
    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if n > self.rest.len() {
            return Err(XdrError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn word<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| XdrError::Truncated)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        Ok(u32::from_be_bytes(self.word::<4>()?))
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(i32::from_be_bytes(self.word::<4>()?))
    }

    /// An unsigned 64-bit integer (XDR "unsigned hyper").
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        Ok(u64::from_be_bytes(self.word::<8>()?))
    }

    /// A signed 64-bit integer (XDR "hyper").
    pub fn i64(&mut self) -> Result<i64, XdrError> {
        Ok(i64::from_be_bytes(self.word::<8>()?))
    }

    /// A boolean: 0 or 1, anything else is [`XdrError::BadValue`].
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadValue {
                what: "bool",
                value,
            }),
        }
    }

    /// Fixed-length opaque data of `n` bytes followed by its padding.
    pub fn opaque_fixed(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let padded = n.checked_add(pad_len(n)).ok_or(XdrError::Truncated)?;
        let bytes = self.take(padded)?;
        bytes.get(..n).ok_or(XdrError::Truncated)
    }

    /// Variable-length opaque data of at most `max` bytes, named `what` in errors.
    pub fn opaque_named(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        self.opaque_fixed(len)
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        self.opaque_named("opaque", max)
    }

    /// A string of at most `max` bytes, returned as raw bytes (NFS names need not be UTF-8).
    pub fn string(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        self.opaque_named("string", max)
    }

    /// The length word of a counted array of at most `max` items, each at least 4 bytes long;
    /// refused before allocating when it exceeds `max` or the bytes left.
    pub fn array_len(&mut self, what: &'static str, max: usize) -> Result<usize, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        if len.saturating_mul(4) > self.rest.len() {
            return Err(XdrError::Truncated);
        }
        Ok(len)
    }

    /// Decodes a value of type `T`.
    pub fn unpack<T: Unpack>(&mut self) -> Result<T, XdrError> {
        T::unpack(self)
    }
}

/// Builds an XDR encoding in a `Vec<u8>`.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// A writer whose first `prefix` bytes are reserved (zeros, filled later with
    /// [`Writer::set_prefix`]), with room for `room` bytes after them: a reply body packed
    /// behind the space of its header, so the header goes in front without copying the body.
    pub fn with_prefix(prefix: usize, room: usize) -> Self {
        let mut buf = Vec::with_capacity(prefix + room);
        buf.resize(prefix, 0);
        Writer { buf }
    }

    /// Overwrites the first `bytes.len()` bytes (reserved with [`Writer::with_prefix`]).
    ///
    /// # Panics
    ///
    /// When fewer bytes were written than `bytes` holds (a caller's bug, never input).
    pub fn set_prefix(&mut self, bytes: &[u8]) {
        self.buf[..bytes.len()].copy_from_slice(bytes);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Reserves room for `n` more bytes.
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A signed 64-bit integer.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A boolean (0 or 1).
    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v));
    }

    /// Fixed-length opaque data: the bytes and their padding, no length.
    pub fn opaque_fixed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad(data.len());
    }

    /// The zero padding that follows `n` bytes of opaque data.
    pub fn pad(&mut self, n: usize) {
        self.buf.extend_from_slice(&[0u8; 3][..pad_len(n)]);
    }

    /// Variable-length opaque data: length, bytes, padding. `data` must be under 4 GiB.
    pub fn opaque(&mut self, data: &[u8]) {
        debug_assert!(u32::try_from(data.len()).is_ok());
        self.u32(data.len() as u32);
        self.opaque_fixed(data);
    }

    /// A string (encoded like variable-length opaque data).
    pub fn string(&mut self, s: &[u8]) {
        self.opaque(s);
    }

    /// Encodes `v`.
    pub fn pack<T: Pack + ?Sized>(&mut self, v: &T) {
        v.pack(self);
    }
}

/// A value that encodes itself as XDR.
pub trait Pack {
    /// Appends the encoding of `self` to `w`.
    fn pack(&self, w: &mut Writer);
}

/// A value that decodes itself from XDR, refusing anything over its protocol limits.
pub trait Unpack: Sized {
    /// Decodes a value from `r`.
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError>;
}

/// Decodes a `T` that must span all of `buf` (leftover bytes are [`XdrError::Trailing`]).
pub fn decode<T: Unpack>(buf: &[u8]) -> Result<T, XdrError> {
    let mut r = Reader::new(buf);
    let v = T::unpack(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Encodes `v` into a new buffer.
pub fn encode<T: Pack + ?Sized>(v: &T) -> Vec<u8> {
    let mut w = Writer::new();
    v.pack(&mut w);
    w.into_inner()
}

macro_rules! primitive {
    ($ty:ty, $method:ident) => {
        impl Pack for $ty {
            fn pack(&self, w: &mut Writer) {
                w.$method(*self);
            }
        }
        impl Unpack for $ty {
            fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
                r.$method()
            }
        }
    };
}

primitive!(u32, u32);
primitive!(i32, i32);
primitive!(u64, u64);
primitive!(i64, i64);
primitive!(bool, bool);

/// Fixed-length opaque data (verifiers are `[u8; 8]`).
impl<const N: usize> Pack for [u8; N] {
    fn pack(&self, w: &mut Writer) {
        w.opaque_fixed(self);
    }
}

impl<const N: usize> Unpack for [u8; N] {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let bytes = r.opaque_fixed(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| XdrError::Truncated)
    }
}

/// XDR `void`.
impl Pack for () {
    fn pack(&self, _w: &mut Writer) {}
}

impl Unpack for () {
    fn unpack(_r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
}

/// XDR optional data (`*T`): a boolean "value follows", then the value if it does.
impl<T: Pack> Pack for Option<T> {
    fn pack(&self, w: &mut Writer) {
        match self {
            Some(v) => {
                w.bool(true);
                v.pack(w);
            }
            None => w.bool(false),
        }
    }
}

impl<T: Unpack> Unpack for Option<T> {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        if r.bool()? {
            Ok(Some(T::unpack(r)?))
        } else {
            Ok(None)
        }
    }
}

/// Defines a `#[repr(u32)]` enum with `Pack`, `Unpack` (unknown values are `BadValue`),
/// `to_u32` and `from_u32`. The string names the type in errors.
macro_rules! xdr_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $value),+
        }

        impl $name {
            /// The value's number on the wire.
            pub fn to_u32(self) -> u32 {
                self as u32
            }

            /// The variant numbered `v`, if the protocol defines it.
            pub fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::xdr::Pack for $name {
            fn pack(&self, w: &mut $crate::xdr::Writer) {
                w.u32(*self as u32);
            }
        }

        impl $crate::xdr::Unpack for $name {
            fn unpack(
                r: &mut $crate::xdr::Reader<'_>,
            ) -> Result<Self, $crate::xdr::XdrError> {
                let value = r.u32()?;
                Self::from_u32(value).ok_or($crate::xdr::XdrError::BadValue { what: $what, value })
            }
        }
    };
}

/// Defines a struct whose XDR encoding is its fields in order, with `Pack` and `Unpack`.
macro_rules! xdr_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),+
        }

        impl $crate::xdr::Pack for $name {
            fn pack(&self, w: &mut $crate::xdr::Writer) {
                $($crate::xdr::Pack::pack(&self.$field, w);)+
            }
        }

        impl $crate::xdr::Unpack for $name {
            fn unpack(
                r: &mut $crate::xdr::Reader<'_>,
            ) -> Result<Self, $crate::xdr::XdrError> {
                // Struct expressions evaluate their fields in the order written.
                Ok(Self {
                    $($field: <$ty as $crate::xdr::Unpack>::unpack(r)?),+
                })
            }
        }
    };
}

pub(crate) use {xdr_enum, xdr_struct};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian() {
        let mut w = Writer::new();
        w.u32(0x0102_0304);
        w.i32(-2);
        w.u64(0x0102_0304_0506_0708);
        w.i64(-1);
        w.bool(true);
        let b = w.into_inner();
        assert_eq!(
            b,
            [
                1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1
            ]
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.u32(), Ok(0x0102_0304));
        assert_eq!(r.i32(), Ok(-2));
        assert_eq!(r.u64(), Ok(0x0102_0304_0506_0708));
        assert_eq!(r.i64(), Ok(-1));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.position(), 28);
        assert_eq!(r.u32(), Err(XdrError::Truncated));
    }

    #[test]
    fn opaque_is_padded_to_four() {
        // RFC 4506 section 4.10: length, bytes, then zeros up to a multiple of four.
        let mut w = Writer::new();
        w.opaque(b"abcde");
        w.string(b"");
        w.opaque_fixed(b"xy");
        let b = w.into_inner();
        assert_eq!(
            b,
            [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0, 0, 0, 0, 0, b'x', b'y', 0, 0]
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.opaque(5), Ok(&b"abcde"[..]));
        assert_eq!(r.string(0), Ok(&b""[..]));
        assert_eq!(r.opaque_fixed(2), Ok(&b"xy"[..]));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn lengths_are_checked_before_use() {
        let b = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        assert_eq!(
            Reader::new(&b).opaque(1024),
            Err(XdrError::TooLong {
                what: "opaque",
                len: 0xffff_ffff,
                max: 1024
            })
        );
        assert_eq!(Reader::new(&b).opaque(usize::MAX), Err(XdrError::Truncated));
        assert_eq!(
            Reader::new(&b).array_len("gids", 16),
            Err(XdrError::TooLong {
                what: "gids",
                len: 0xffff_ffff,
                max: 16
            })
        );
        // Two items claimed, one item's worth of bytes left.
        assert_eq!(
            Reader::new(&[0, 0, 0, 2, 0, 0, 0, 1]).array_len("gids", 16),
            Err(XdrError::Truncated)
        );
        // Padding missing at the end.
        assert_eq!(
            Reader::new(&[0, 0, 0, 1, 7]).opaque(4),
            Err(XdrError::Truncated)
        );
    }

    #[test]
    fn bool_and_option() {
        assert_eq!(
            Reader::new(&[0, 0, 0, 2]).bool(),
            Err(XdrError::BadValue {
                what: "bool",
                value: 2
            })
        );
        let some: Option<u32> = Some(7);
        let b = encode(&some);
        assert_eq!(b, [0, 0, 0, 1, 0, 0, 0, 7]);
        assert_eq!(decode::<Option<u32>>(&b), Ok(Some(7)));
        assert_eq!(decode::<Option<u32>>(&[0, 0, 0, 0]), Ok(None));
        assert_eq!(
            decode::<Option<u32>>(&[0, 0, 0, 0, 9]),
            Err(XdrError::Trailing(1))
        );
        let verf = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(decode::<[u8; 8]>(&encode(&verf)), Ok(verf));
    }
}
