//! The objects a session dropped while the application still held them, and why: a later
//! call on one fails with that error rather than as "not open in this client".

use std::collections::BTreeMap;

use crate::error::CallError;

/// Dropped objects by name, each with why and when it was dropped; at most `capacity`, the
/// oldest forgotten first (an application that keeps losing objects hears why about the
/// newest).
#[derive(Debug)]
pub(crate) struct LostObjects {
    capacity: usize,
    by_name: BTreeMap<String, (u64, CallError)>,
    next_order: u64,
}

impl LostObjects {
    pub(crate) fn new(capacity: usize) -> Self {
        LostObjects {
            capacity,
            by_name: BTreeMap::new(),
            next_order: 0,
        }
    }

    /// Notes that `object_id` was dropped with `error`, forgetting the oldest when full.
    pub(crate) fn insert(&mut self, object_id: &str, error: CallError) {
        if !self.by_name.contains_key(object_id)
            && self.by_name.len() >= self.capacity
            && let Some(oldest) = self
                .by_name
                .iter()
                .min_by_key(|(_, (order, _))| *order)
                .map(|(name, _)| name.clone())
        {
            self.by_name.remove(&oldest);
        }
        self.by_name
            .insert(object_id.to_owned(), (self.next_order, error));
        self.next_order += 1;
    }

    /// Why `object_id` was dropped, if the session still remembers.
    pub(crate) fn get(&self, object_id: &str) -> Option<&CallError> {
        self.by_name.get(object_id).map(|(_, error)| error)
    }

    /// Forgets `object_id` (opened or closed again).
    pub(crate) fn forget(&mut self, object_id: &str) {
        self.by_name.remove(object_id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::OPEN_OBJECTS_MAX;

    fn released(object: &str, position: u64) -> CallError {
        CallError::Released {
            object: object.to_owned(),
            position,
        }
    }

    /// A session that drops more objects than it remembers keeps the newest
    /// `OPEN_OBJECTS_MAX`, whatever their names, and forgets one opened again.
    #[test]
    fn the_newest_dropped_objects_are_remembered_up_to_the_bound() {
        let mut lost = LostObjects::new(OPEN_OBJECTS_MAX);
        // Named so that the oldest is the last by name and the newest the first.
        lost.insert("z-first", released("z-first", 1));
        for index in 0..OPEN_OBJECTS_MAX - 1 {
            let name = format!("m{index:05}");
            lost.insert(&name, released(&name, 2));
        }
        assert_eq!(lost.len(), OPEN_OBJECTS_MAX);
        lost.insert("a-last", released("a-last", 3));
        assert_eq!(lost.len(), OPEN_OBJECTS_MAX, "the bound holds");
        assert_eq!(lost.get("z-first"), None, "the oldest is forgotten");
        assert_eq!(lost.get("m00000"), Some(&released("m00000", 2)));
        assert_eq!(lost.get("a-last"), Some(&released("a-last", 3)));
        // Dropped again: it is the newest now, and the next drop forgets the next oldest.
        lost.insert("m00000", released("m00000", 4));
        assert_eq!(lost.len(), OPEN_OBJECTS_MAX);
        lost.insert("b", released("b", 5));
        assert_eq!(lost.get("m00000"), Some(&released("m00000", 4)));
        assert_eq!(lost.get("m00001"), None);
        lost.forget("b");
        assert_eq!(lost.get("b"), None);
        assert_eq!(lost.len(), OPEN_OBJECTS_MAX - 1);
    }
}
