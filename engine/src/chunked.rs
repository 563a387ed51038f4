//! An append-mostly list that never moves its elements.
//!
//! The in-memory IO manager and trace store keep one record per output and
//! per step, a few hundred bytes each. In a `Vec` every growth copies all of
//! them into fresh memory, which the kernel must first zero: at 100k steps
//! the copies and their page faults were a third of a cold run's engine
//! time. Fixed-size chunks are allocated once and filled in place, and a
//! freed chunk is small enough for the allocator to hand out again.

/// Elements per chunk: 512 records of a few hundred bytes are some 100–200
/// KiB, below glibc's largest mmap threshold, so chunks come from the heap
/// and are reused across runs instead of being mapped and zeroed each time.
const CHUNK: usize = 512;

/// A list of `T` in fixed-size chunks: `push` never moves an element.
#[derive(Debug)]
pub(crate) struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> ChunkedVec<T> {
        ChunkedVec { chunks: Vec::new(), len: 0 }
    }
}

impl<T> ChunkedVec<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK).and_then(|c| c.get_mut(i % CHUNK))
    }

    /// Removes element `i` and puts the last element in its place, like
    /// [`Vec::swap_remove`]; `None` when `i` is out of range.
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let last = self.chunks.last_mut()?.pop()?;
        if self.chunks.last().is_some_and(Vec::is_empty) {
            self.chunks.pop();
        }
        self.len -= 1;
        if i == self.len {
            return Some(last);
        }
        let slot = self.get_mut(i)?;
        Some(std::mem::replace(slot, last))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for ChunkedVec<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for ChunkedVec<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{CHUNK, ChunkedVec};

    #[derive(Debug, Clone)]
    enum Edit {
        Push(u32),
        SwapRemove(usize),
        Set(usize, u32),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            4 => any::<u32>().prop_map(Edit::Push),
            1 => (0..3 * CHUNK).prop_map(Edit::SwapRemove),
            1 => (0..3 * CHUNK, any::<u32>()).prop_map(|(i, v)| Edit::Set(i, v)),
        ]
    }

    proptest! {
        /// Behaves exactly like a `Vec` under pushes, swap-removes and
        /// writes, across chunk boundaries.
        #[test]
        fn behaves_like_a_vec(edits in prop::collection::vec(edit(), 0..3 * CHUNK)) {
            let mut model: Vec<u32> = Vec::new();
            let mut list = ChunkedVec::default();
            for e in edits {
                match e {
                    Edit::Push(v) => { model.push(v); list.push(v); }
                    Edit::SwapRemove(i) => {
                        let want = (i < model.len()).then(|| model.swap_remove(i));
                        prop_assert_eq!(list.swap_remove(i), want);
                    }
                    Edit::Set(i, v) => {
                        if let Some(m) = model.get_mut(i) { *m = v; }
                        if let Some(l) = list.get_mut(i) { *l = v; }
                    }
                }
                prop_assert_eq!(list.len(), model.len());
            }
            prop_assert_eq!(list.iter().copied().collect::<Vec<_>>(), model.clone());
            for (i, m) in model.iter().enumerate() {
                prop_assert_eq!(list.get(i), Some(m));
                prop_assert_eq!(&list[i], m);
            }
            prop_assert_eq!(list.get(model.len()), None);
        }
    }
}
