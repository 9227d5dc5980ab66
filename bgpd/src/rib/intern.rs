//! Interning of path attribute sets: routes that share attributes share one
//! allocation, as BIRD's attribute cache does. Thousands of prefixes from
//! one UPDATE, or from one peer with one policy, cost one `RouteAttrs`.

use std::sync::Arc;

use crate::hash::HashSet;

use super::RouteAttrs;

#[derive(Debug, Default)]
pub struct AttrInterner {
    set: HashSet<Arc<RouteAttrs>>,
    inserts_since_gc: usize,
}

impl AttrInterner {
    /// The shared copy of `attrs`.
    pub fn intern(&mut self, attrs: RouteAttrs) -> Arc<RouteAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return a.clone();
        }
        let a = Arc::new(attrs);
        self.set.insert(a.clone());
        self.inserts_since_gc += 1;
        // Drop entries no route uses any more, amortized over inserts.
        if self.inserts_since_gc > self.set.len().max(1024) {
            self.gc();
        }
        a
    }

    /// The shared copy of the set `attrs` holds: the one already stored,
    /// or `attrs` itself, kept without copying it.
    pub fn intern_arc(&mut self, attrs: Arc<RouteAttrs>) -> Arc<RouteAttrs> {
        if let Some(a) = self.set.get(&*attrs) {
            return a.clone();
        }
        self.set.insert(attrs.clone());
        self.inserts_since_gc += 1;
        if self.inserts_since_gc > self.set.len().max(1024) {
            self.gc();
        }
        attrs
    }

    /// Forgets attribute sets that only the interner still holds.
    pub fn gc(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.inserts_since_gc = 0;
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::AsPath;

    fn attrs(med: u32) -> RouteAttrs {
        RouteAttrs { med: Some(med), ..RouteAttrs::with_path(AsPath::sequence(vec![65001])) }
    }

    #[test]
    fn identical_sets_are_stored_once_and_collected() {
        let mut i = AttrInterner::default();
        let a = i.intern(attrs(1));
        let b = i.intern(attrs(1));
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.intern(attrs(2));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.len(), 2);
        drop(c);
        i.gc();
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn an_arc_is_kept_as_it_is_or_matched_to_the_stored_set() {
        let mut i = AttrInterner::default();
        let a = i.intern(attrs(1));
        let same = i.intern_arc(Arc::new(attrs(1)));
        assert!(Arc::ptr_eq(&a, &same), "an equal set is the stored one");
        let fresh = Arc::new(attrs(3));
        let kept = i.intern_arc(fresh.clone());
        assert!(Arc::ptr_eq(&fresh, &kept), "a new set is stored as given, not copied");
        assert!(Arc::ptr_eq(&i.intern(attrs(3)), &fresh));
        assert_eq!(i.len(), 2);
    }
}
