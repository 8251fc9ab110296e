//! Small integer ids (KVM memslots, GSIs) handed out lowest first and reused once
//! freed: memslots come and go at run time (a BAR that moves), and KVM caps how many
//! a VM may have.

use std::collections::BTreeSet;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("all {count} {what} ids ({first}..={last}) are in use")]
    Exhausted {
        what: &'static str,
        first: u32,
        last: u32,
        count: u64,
    },
    #[error("{what} id {id} is not in use")]
    NotInUse { what: &'static str, id: u32 },
}

#[derive(Debug, Clone)]
pub struct IdAllocator {
    what: &'static str,
    first: u32,
    last: u32,
    used: BTreeSet<u32>,
}

impl IdAllocator {
    /// Ids `first..=last`, named `what` in errors.
    pub fn new(what: &'static str, first: u32, last: u32) -> Self {
        Self {
            what,
            first,
            last: last.max(first),
            used: BTreeSet::new(),
        }
    }

    /// The lowest free id.
    pub fn allocate(&mut self) -> Result<u32, IdError> {
        let mut id = self.first;
        for &u in self.used.range(self.first..) {
            if u != id {
                break;
            }
            if id == self.last {
                return Err(self.exhausted());
            }
            id += 1;
        }
        if id > self.last {
            return Err(self.exhausted());
        }
        self.used.insert(id);
        Ok(id)
    }

    fn exhausted(&self) -> IdError {
        IdError::Exhausted {
            what: self.what,
            first: self.first,
            last: self.last,
            count: u64::from(self.last - self.first) + 1,
        }
    }

    pub fn free(&mut self, id: u32) -> Result<(), IdError> {
        if self.used.remove(&id) {
            Ok(())
        } else {
            Err(IdError::NotInUse {
                what: self.what,
                id,
            })
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_lowest_first_and_are_reused_after_free() {
        let mut a = IdAllocator::new("memslot", 0, 3);
        assert_eq!(
            (0..4).map(|_| a.allocate().unwrap()).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let e = a.allocate().unwrap_err();
        assert_eq!(e.to_string(), "all 4 memslot ids (0..=3) are in use");
        a.free(2).unwrap();
        a.free(0).unwrap();
        assert_eq!(a.allocate().unwrap(), 0);
        assert_eq!(a.allocate().unwrap(), 2);
        assert_eq!(
            a.free(7),
            Err(IdError::NotInUse {
                what: "memslot",
                id: 7
            })
        );
        assert_eq!(a.in_use(), 4);
    }

    #[test]
    fn a_range_ending_at_the_top_id_does_not_overflow() {
        let mut a = IdAllocator::new("gsi", u32::MAX - 1, u32::MAX);
        assert_eq!(a.allocate().unwrap(), u32::MAX - 1);
        assert_eq!(a.allocate().unwrap(), u32::MAX);
        assert!(a.allocate().is_err());
    }
}
