//! What a reload keeps: objects with a life of their own (processes, buckets, key refreshers), reused while their config is unchanged.

use std::sync::{Arc, Mutex, Weak};

/// Objects still in use by some snapshot, by the config they were built from.
pub struct Live<T>(Mutex<Vec<(String, Weak<T>)>>);

impl<T> Default for Live<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Live<T> {
    /// An empty registry (for a `static`).
    pub const fn new() -> Self {
        Live(Mutex::new(Vec::new()))
    }

    /// The live object built for `key`, else a new one from `make`, remembered for the next
    /// reload. Runs on the control thread, so holding the lock while `make` works costs nothing.
    pub fn get_or_make<E>(&self, key: String, make: impl FnOnce() -> Result<Arc<T>, E>) -> Result<Arc<T>, E> {
        let Ok(mut live) = self.0.lock() else { return make() };
        live.retain(|(_, w)| w.strong_count() > 0);
        if let Some(t) = live.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(t);
        }
        let t = make()?;
        live.push((key, Arc::downgrade(&t)));
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_while_alive() {
        static L: Live<u32> = Live::new();
        let a = L.get_or_make::<()>("a".into(), || Ok(Arc::new(1))).unwrap();
        let again = L.get_or_make::<()>("a".into(), || Ok(Arc::new(2))).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(*L.get_or_make::<()>("b".into(), || Ok(Arc::new(3))).unwrap(), 3);
        drop((a, again));
        assert_eq!(*L.get_or_make::<()>("a".into(), || Ok(Arc::new(4))).unwrap(), 4, "dropped: built anew");
        assert!(L.get_or_make("c".into(), || Err("no")).is_err());
    }
}
