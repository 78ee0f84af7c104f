//! Locks that recover from poisoning, in one place instead of at every `lock()`.
//!
//! A `std` lock is poisoned when a thread panics while holding it; every later `lock()` then
//! returns an error carrying the guard. Foundation's locks guard state that each critical
//! section changes in one step (insert, remove, replace, push), so the data a panicking holder
//! left is whole, and the right reaction is to go on with it, not to turn one panic into a
//! panic in every thread that touches the lock. These traits say that once:
//! `mutex.lock_or_recover()`, `rwlock.read_or_recover()`, `rwlock.write_or_recover()`.
//!
//! A lock whose critical section makes several changes that must all happen or none does not
//! belong here: it should handle the poison (or avoid panicking inside) explicitly.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`], going on with the data if a holder panicked (see the [module docs](self)).
pub trait MutexRecover<T: ?Sized> {
    /// Locks the mutex; a poisoned one is used as it is.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexRecover<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`], going on with the data if a holder panicked (see the
/// [module docs](self)).
pub trait RwLockRecover<T: ?Sized> {
    /// Locks for reading; a poisoned lock is used as it is.
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    /// Locks for writing; a poisoned lock is used as it is.
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockRecover<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_holder_leaves_the_data_usable() {
        let mutex = std::sync::Arc::new(Mutex::new(vec![1]));
        let rwlock = std::sync::Arc::new(RwLock::new(1));
        let (m, r) = (mutex.clone(), rwlock.clone());
        let panicked = std::thread::spawn(move || {
            let _m = m.lock_or_recover();
            let _r = r.write_or_recover();
            panic!("holder panics");
        })
        .join();
        assert!(panicked.is_err() && mutex.is_poisoned() && rwlock.is_poisoned());
        mutex.lock_or_recover().push(2);
        *rwlock.write_or_recover() += 1;
        assert_eq!(*mutex.lock_or_recover(), [1, 2]);
        assert_eq!(*rwlock.read_or_recover(), 2);
    }
}
