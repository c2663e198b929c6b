//! Ownership of the buffers that cross the boundary: each side allocates its outputs as
//! boxed slices ([`OwnedBuffer::from_bytes`] and friends), the other side reads them through
//! a [`Received`] guard, which hands them back to the allocating side's `free_buffer` when
//! dropped. Both sides use this module, each with its own allocator.
use std::ffi::c_void;

use nas_core::{NasError, Result};
use serde::de::DeserializeOwned;

use crate::abi::{FreeFn, OwnedBuffer, BUFFER_BYTES, BUFFER_EMPTY, BUFFER_F32, BUFFER_USIZE};

impl OwnedBuffer {
    /// A buffer that holds nothing and needs no freeing.
    pub const EMPTY: OwnedBuffer = OwnedBuffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        kind: BUFFER_EMPTY,
    };

    fn from_boxed<T>(values: Vec<T>, kind: u32) -> Self {
        let boxed: Box<[T]> = values.into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed) as *mut T as *mut c_void;
        OwnedBuffer { ptr, len, kind }
    }

    /// Hands over bytes (UTF-8 JSON or text).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self::from_boxed(bytes, BUFFER_BYTES)
    }

    /// Hands over `f32` values.
    pub fn from_f32(values: Vec<f32>) -> Self {
        Self::from_boxed(values, BUFFER_F32)
    }

    /// Hands over `usize` values.
    pub fn from_usize(values: Vec<usize>) -> Self {
        Self::from_boxed(values, BUFFER_USIZE)
    }

    /// Takes the value out, leaving [`OwnedBuffer::EMPTY`] behind.
    pub fn take(&mut self) -> OwnedBuffer {
        std::mem::replace(self, OwnedBuffer::EMPTY)
    }
}

/// Writes `buffer` into the out-parameter `out` (dropped, i.e. freed, when `out` is null).
///
/// # Safety
/// `out` must be null or valid for writes; whatever it held before is overwritten, not freed.
pub unsafe fn put(out: *mut OwnedBuffer, buffer: OwnedBuffer) {
    if out.is_null() {
        // SAFETY: the buffer was made by this side's allocator just now.
        unsafe { free_buffer(buffer) };
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { out.write(buffer) };
    }
}

/// Frees a buffer made by this copy of the SDK. This is the `free_buffer` of every plugin
/// table and of every host environment.
///
/// # Safety
/// `buffer` must come from [`OwnedBuffer::from_bytes`], [`OwnedBuffer::from_f32`] or
/// [`OwnedBuffer::from_usize`] of this same copy of the SDK and must not be used afterwards.
pub unsafe extern "C" fn free_buffer(buffer: OwnedBuffer) {
    if buffer.ptr.is_null() {
        return;
    }
    // SAFETY: the pointer, length and element type are those of a leaked boxed slice.
    unsafe {
        match buffer.kind {
            BUFFER_BYTES => drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                buffer.ptr as *mut u8,
                buffer.len,
            ))),
            BUFFER_F32 => drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                buffer.ptr as *mut f32,
                buffer.len,
            ))),
            BUFFER_USIZE => drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                buffer.ptr as *mut usize,
                buffer.len,
            ))),
            // Unknown kind: leaking is the only safe choice.
            _ => {}
        }
    }
}

/// A buffer received from the other side: read it, and it goes back to its allocator's
/// `free_buffer` on drop.
pub struct Received {
    buffer: OwnedBuffer,
    free: FreeFn,
}

impl Received {
    /// Takes ownership of `buffer`, to be freed with `free`.
    ///
    /// # Safety
    /// `buffer` must have been filled in by the side whose `free_buffer` is `free` (or be
    /// empty), and must describe `len` valid elements of its kind.
    pub unsafe fn new(buffer: OwnedBuffer, free: FreeFn) -> Self {
        Received { buffer, free }
    }

    fn slice<T>(&self, kind: u32, what: &str) -> Result<&[T]> {
        if self.buffer.kind == BUFFER_EMPTY || self.buffer.len == 0 {
            return Ok(&[]);
        }
        if self.buffer.kind != kind || self.buffer.ptr.is_null() {
            return Err(NasError::Plugin(format!(
                "expected a buffer of {what}, got buffer kind {} with {} elements",
                self.buffer.kind, self.buffer.len
            )));
        }
        // SAFETY: `new`'s contract: `len` valid elements of this kind.
        Ok(unsafe { std::slice::from_raw_parts(self.buffer.ptr as *const T, self.buffer.len) })
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buffer.kind == BUFFER_EMPTY || self.buffer.len == 0
    }

    /// The bytes.
    pub fn bytes(&self) -> Result<&[u8]> {
        self.slice(BUFFER_BYTES, "bytes")
    }

    /// The bytes as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|e| NasError::Plugin(format!("buffer is not UTF-8: {e}")))
    }

    /// The bytes as text, invalid UTF-8 replaced (for error messages).
    pub fn text_lossy(&self) -> String {
        match self.bytes() {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// Decodes the bytes as JSON into `T`; `what` names the value in errors.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(self.bytes()?)
            .map_err(|e| NasError::Plugin(format!("cannot decode {what} from JSON: {e}")))
    }

    /// The `f32` values.
    pub fn floats(&self) -> Result<&[f32]> {
        self.slice(BUFFER_F32, "f32 values")
    }

    /// The `usize` values.
    pub fn sizes(&self) -> Result<&[usize]> {
        self.slice(BUFFER_USIZE, "usize values")
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        let buffer = self.buffer.take();
        if !buffer.ptr.is_null() {
            // SAFETY: `new`'s contract: `free` belongs to the side that allocated it.
            unsafe { (self.free)(buffer) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_round_trip_and_free() {
        let b = OwnedBuffer::from_f32(vec![1.5, -2.0, f32::NAN]);
        let r = unsafe { Received::new(b, free_buffer) };
        let v = r.floats().unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], 1.5);
        assert!(v[2].is_nan());
        // Wrong kind is an error, not a reinterpretation.
        assert!(r.bytes().is_err());

        let r =
            unsafe { Received::new(OwnedBuffer::from_bytes(b"{\"a\":1}".to_vec()), free_buffer) };
        let v: serde_json::Value = r.json("test value").unwrap();
        assert_eq!(v["a"], 1);

        let r = unsafe { Received::new(OwnedBuffer::from_usize(vec![3, 4]), free_buffer) };
        assert_eq!(r.sizes().unwrap(), &[3, 4]);

        let r = unsafe { Received::new(OwnedBuffer::EMPTY, free_buffer) };
        assert!(r.is_empty());
        assert_eq!(r.floats().unwrap(), &[] as &[f32]);

        // Zero-length allocations are freed without trouble.
        unsafe { free_buffer(OwnedBuffer::from_f32(Vec::new())) };
    }

    #[test]
    fn put_into_null_frees() {
        unsafe { put(std::ptr::null_mut(), OwnedBuffer::from_bytes(vec![1, 2, 3])) };
        let mut out = OwnedBuffer::EMPTY;
        unsafe { put(&mut out, OwnedBuffer::from_bytes(vec![1, 2, 3])) };
        let r = unsafe { Received::new(out, free_buffer) };
        assert_eq!(r.bytes().unwrap(), &[1, 2, 3]);
    }
}
