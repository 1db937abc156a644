//! Two-phase configuration swap across shards: precommit everywhere, then commit, or abort everywhere.

use std::time::Duration;

/// A shard's answer to a precommit.
pub type Ack = Result<(), String>;

/// Run the two-phase protocol. `precommit(i, ack)` must send shard `i` its precommit message
/// carrying `ack`; `finish(i, done)` sends the commit (`Some(done)`, to be answered once the
/// shard serves the new state) or the abort (`None`), and returns whether it was sent.
///
/// Shards build their new state during precommit and keep serving the old one; nothing changes
/// anywhere unless every shard acknowledged in time. `Ok(true)` means every shard also confirmed
/// its commit within `timeout`, so callers may report the swap as applied everywhere.
pub fn two_phase(
    shards: usize,
    timeout: Duration,
    mut precommit: impl FnMut(usize, flume::Sender<Ack>) -> bool,
    mut finish: impl FnMut(usize, Option<flume::Sender<()>>) -> bool,
) -> Result<bool, String> {
    let (tx, rx) = flume::bounded(shards.max(1));
    let mut sent = 0;
    for i in 0..shards {
        if precommit(i, tx.clone()) {
            sent += 1;
        }
    }
    drop(tx);
    let mut failure = (sent < shards).then(|| "a shard is not running".to_string());
    let deadline = std::time::Instant::now() + timeout;
    for _ in 0..sent {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => {
                failure = failure.or(Some("a shard did not answer the precommit in time".into()));
                break;
            }
        }
    }
    if let Some(e) = failure {
        for i in 0..shards {
            finish(i, None);
        }
        return Err(e);
    }
    let (done_tx, done_rx) = flume::bounded(shards.max(1));
    let committed = (0..shards).filter(|&i| finish(i, Some(done_tx.clone()))).count();
    drop(done_tx);
    let deadline = std::time::Instant::now() + timeout;
    let confirmed = (0..committed)
        .take_while(|_| done_rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_ok())
        .count();
    Ok(committed == shards && confirmed == shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_when_all_ack() {
        let mut finished = vec![];
        let r = two_phase(
            3,
            Duration::from_secs(1),
            |i, ack| ack.send(if i == 1 { Err("bad".into()) } else { Ok(()) }).is_ok(),
            |i, done| {
                finished.push((i, done.is_some()));
                true
            },
        );
        assert_eq!(r, Err("bad".into()));
        assert!(finished.iter().all(|(_, c)| !c));
        assert_eq!(finished.len(), 3);

        let mut commits = 0;
        let r = two_phase(
            2,
            Duration::from_secs(1),
            |_, ack| ack.send(Ok(())).is_ok(),
            |_, done| {
                commits += done.is_some() as i32;
                done.is_some_and(|d| d.send(()).is_ok())
            },
        );
        assert_eq!(r, Ok(true));
        assert_eq!(commits, 2);
    }

    #[test]
    fn unconfirmed_commit_is_reported() {
        let mut keep = vec![];
        let r = two_phase(
            2,
            Duration::from_millis(50),
            |_, ack| ack.send(Ok(())).is_ok(),
            |i, done| match done {
                // shard 1 takes the commit but never confirms it
                Some(d) if i == 1 => {
                    keep.push(d);
                    true
                }
                Some(d) => d.send(()).is_ok(),
                None => true,
            },
        );
        assert_eq!(r, Ok(false));
    }

    #[test]
    fn silent_shard_aborts() {
        let mut keep = vec![];
        let r = two_phase(
            2,
            Duration::from_millis(50),
            |_, ack| {
                keep.push(ack);
                true
            },
            |_, done| {
                assert!(done.is_none());
                true
            },
        );
        assert!(r.is_err());
    }
}
