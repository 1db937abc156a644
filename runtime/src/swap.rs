//! Two-phase configuration swap across shards: precommit everywhere, then commit, or abort everywhere.

use std::time::Duration;

/// A shard's answer to a precommit.
pub type Ack = Result<(), String>;

/// Run the two-phase protocol. `precommit(i, ack)` must send shard `i` its precommit message
/// carrying `ack`; `finish(i, commit)` sends the commit or abort.
///
/// Shards build their new state during precommit and keep serving the old one; nothing changes
/// anywhere unless every shard acknowledged in time.
pub fn two_phase(
    shards: usize,
    timeout: Duration,
    mut precommit: impl FnMut(usize, flume::Sender<Ack>) -> bool,
    mut finish: impl FnMut(usize, bool),
) -> Result<(), String> {
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
    let commit = failure.is_none();
    for i in 0..shards {
        finish(i, commit);
    }
    match failure {
        None => Ok(()),
        Some(e) => Err(e),
    }
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
            |i, c| finished.push((i, c)),
        );
        assert_eq!(r, Err("bad".into()));
        assert!(finished.iter().all(|(_, c)| !c));
        assert_eq!(finished.len(), 3);

        let mut commits = 0;
        let r = two_phase(2, Duration::from_secs(1), |_, ack| ack.send(Ok(())).is_ok(), |_, c| commits += c as i32);
        assert!(r.is_ok());
        assert_eq!(commits, 2);
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
            |_, c| assert!(!c),
        );
        assert!(r.is_err());
    }
}
