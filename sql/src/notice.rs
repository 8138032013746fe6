//! NOTICE messages a statement raises, as PostgreSQL's `ereport(NOTICE)`:
//! `DROP TABLE IF EXISTS t` when there is no `t` says `table "t" does not
//! exist, skipping`. Statement code calls [`raise`]; the session runs each
//! statement under [`collect`] and keeps what it raised until the front end
//! takes it (`Session::take_notices`) and sends it before the statement's
//! result. A notice raised outside a statement (or in a task a statement
//! spawned) goes nowhere.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static RAISED: RefCell<Vec<String>>;
}

/// Raises a notice for the statement running in this task.
pub fn raise(message: impl Into<String>) {
    let message = message.into();
    if RAISED.try_with(|raised| raised.borrow_mut().push(message.clone())).is_err() {
        tracing::debug!("notice outside a statement: {message}");
    }
}

/// Runs `statement`; returns its output and the notices it raised, in order.
pub async fn collect<T>(statement: impl Future<Output = T>) -> (T, Vec<String>) {
    RAISED
        .scope(RefCell::new(Vec::new()), async {
            let output = statement.await;
            (output, RAISED.with(|raised| raised.take()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notices_are_collected_per_statement_and_dropped_outside_one() {
        raise("outside");
        let (output, notices) = collect(async {
            raise("first");
            tokio::task::yield_now().await;
            raise("second");
            7
        })
        .await;
        assert_eq!((output, notices), (7, vec!["first".to_string(), "second".to_string()]));
        let ((), notices) = collect(async {}).await;
        assert!(notices.is_empty());
    }
}
