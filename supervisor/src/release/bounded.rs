//! A heap vector with a fixed maximum length, checked while decoding.
//!
//! It must not allocate for, or accept, more than `N` elements: the encoded
//! length is checked before the allocation and each element again as it
//! arrives.
//!
//! A full release is about 290 KiB of fixed-capacity manifests; kept inline
//! that is too much for a stack (serde moves values through several frames).
//! The release therefore keeps its containers and images in a [`BoundedVec`]:
//! one heap allocation of at most `N` elements, refused before allocating when
//! the encoded length says more, and again if more elements arrive. Its
//! postcard form is the same as a `heapless::Vec<T, N>`'s.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq)]
pub struct BoundedVec<T, const N: usize>(std::vec::Vec<T>);

impl<T, const N: usize> BoundedVec<T, N> {
    pub const fn new() -> Self {
        BoundedVec(std::vec::Vec::new())
    }

    /// Add an element; gives it back when the vector is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.0.len() >= N {
            return Err(value);
        }
        self.0.push(value);
        Ok(())
    }

    pub fn into_inner(self) -> std::vec::Vec<T> {
        self.0
    }
}

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> TryFrom<std::vec::Vec<T>> for BoundedVec<T, N> {
    type Error = std::vec::Vec<T>;
    fn try_from(v: std::vec::Vec<T>) -> Result<Self, Self::Error> {
        if v.len() > N {
            Err(v)
        } else {
            Ok(BoundedVec(v))
        }
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> DerefMut for BoundedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a BoundedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > N {
                    return Err(A::Error::invalid_length(hint, &self));
                }
                let mut out = std::vec::Vec::with_capacity(hint);
                while let Some(v) = seq.next_element()? {
                    if out.len() >= N {
                        return Err(A::Error::invalid_length(N + 1, &self));
                    }
                    out.push(v);
                }
                Ok(BoundedVec(out))
            }
        }
        d.deserialize_seq(V::<T, N>(PhantomData))
    }
}
