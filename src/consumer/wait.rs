//! The one wait loop of both consumers: drain, fence, re-check, sleep in epoll.
//!
//! A consumer owns a [`Waiter`]: an epoll instance watching its ring(s) plus an eventfd
//! ("pending") that keeps the epoll readable whenever we return with committed records
//! still in the ring (after a callback `Break`, or when a producer keeps us re-draining).
//! Whoever waits on the epoll fd ([`Reader::as_fd`](super::Reader), level- or
//! edge-triggered) is then woken again, instead of sleeping on records that no kernel wakeup
//! will ever announce (the kernel only wakes for a commit at `consumer_pos`).

use std::os::fd::AsFd;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::observer::{Observer, WokenBy};
use super::{io_err, ConsumerError, Drain};
use crate::sys::epoll::Epoll;
use crate::sys::eventfd::EventFd;

/// The epoll token of the pending eventfd; ring tokens are small indices.
const PENDING: u64 = u64::MAX;

/// How many times one call re-drains after the fence and re-check kept finding more before
/// it returns (with the pending eventfd set, so nothing is lost): bounds a call against a
/// producer that never pauses, or one that only discards.
const MAX_REDRAINS: usize = 16;

/// Epoll, the pending eventfd, and the wakeup count.
#[derive(Debug)]
pub(crate) struct Waiter {
    epoll: Epoll,
    pending: EventFd,
    pending_set: bool,
    tokens: Vec<u64>,
    wakeups: u64,
}

impl Waiter {
    pub(crate) fn new() -> Result<Waiter, ConsumerError> {
        let epoll = Epoll::new().map_err(io_err("epoll_create1"))?;
        let pending = EventFd::new().map_err(io_err("eventfd"))?;
        epoll
            .add_readable(pending.as_fd(), PENDING, false)
            .map_err(io_err("epoll_ctl(ADD) of the pending eventfd"))?;
        Ok(Waiter {
            epoll,
            pending,
            pending_set: false,
            tokens: Vec::with_capacity(4),
            wakeups: 0,
        })
    }

    /// The epoll instance, to register the rings (tokens other than `u64::MAX`).
    pub(crate) fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    /// Kernel wakeups seen so far.
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups
    }

    fn set_pending(&mut self) -> Result<(), ConsumerError> {
        if !self.pending_set {
            self.pending.signal().map_err(io_err("eventfd write"))?;
            self.pending_set = true;
        }
        Ok(())
    }

    fn clear_pending(&mut self) -> Result<(), ConsumerError> {
        if self.pending_set {
            self.pending.clear().map_err(io_err("eventfd read"))?;
            self.pending_set = false;
        }
        Ok(())
    }

    /// Counts the ring tokens in `self.tokens` as one kernel wakeup; true if there was one.
    fn note_wakeup(&mut self) -> bool {
        let kernel = self.tokens.iter().any(|&t| t != PENDING);
        if kernel {
            self.wakeups += 1;
        }
        kernel
    }

    /// Drains until the ring is quiet: after each drain that did not stop on `Break`,
    /// `fence(SeqCst)` then `ready()` re-checks for committed data.
    ///
    /// The fence is what makes sleeping afterwards safe. The kernel only wakes a consumer for
    /// a commit at `consumer_pos`, reading it after its commit `xchg` (a full barrier) in
    /// `bpf_ringbuf_commit` (kernel/bpf/ringbuf.c). We store consumer_pos, then re-read the
    /// head. Without a full fence between our store and our re-read, both sides can read the
    /// other's stale value (store buffering): the producer sees the old consumer_pos and
    /// skips the wakeup, we see no new data and sleep, and no later commit is at
    /// consumer_pos either, so nobody wakes us. With `fence(SeqCst)` here and the kernel's
    /// full barrier, at least one side sees the other. A record still BUSY at the head is
    /// fine to sleep on: its commit will find consumer_pos equal to its position.
    ///
    /// (For perf rings the kernel records every wakeup in the event (`rb->poll`) and epoll's
    /// ready list whether or not we sleep yet, so the re-check only saves a round trip.)
    ///
    /// Returns `(delivered, broke)`. On `Break` or after [`MAX_REDRAINS`], if data remains the
    /// pending eventfd is set so the epoll fd stays readable.
    fn drain_quiet<O, D, R>(
        &mut self,
        obs: &mut O,
        drain: &mut D,
        ready: &R,
    ) -> Result<(usize, bool), ConsumerError>
    where
        O: Observer,
        D: FnMut(&mut O) -> Result<Drain, ConsumerError>,
        R: Fn() -> bool,
    {
        let mut total = 0;
        let mut redrains = 0;
        loop {
            let d = drain(obs)?;
            total += d.delivered;
            // Pairs with the full barrier of the kernel's xchg(&hdr->len, new_len) in
            // bpf_ringbuf_commit, which precedes its smp_load_acquire(&rb->consumer_pos); see
            // above. Also after a Break: the records left must be seen or announced.
            fence(Ordering::SeqCst);
            let more = ready();
            obs.recheck(more);
            if !more {
                return Ok((total, d.broke));
            }
            redrains += 1;
            if d.broke || redrains >= MAX_REDRAINS {
                // Records remain and no kernel wakeup will announce them: keep the epoll fd
                // readable until the next consume/poll.
                self.set_pending()?;
                return Ok((total, d.broke));
            }
            obs.woken(WokenBy::None);
        }
    }

    /// The body of every public `consume`: takes what the epoll has ready (so a level-
    /// triggered caller on the epoll fd does not spin, and a wakeup after this point
    /// re-arms it), then drains until quiet. Never sleeps.
    pub(crate) fn consume<O, D, R>(
        &mut self,
        obs: &mut O,
        mut drain: D,
        ready: R,
    ) -> Result<usize, ConsumerError>
    where
        O: Observer,
        D: FnMut(&mut O) -> Result<Drain, ConsumerError>,
        R: Fn() -> bool,
    {
        self.clear_pending()?;
        self.epoll
            .wait(&mut self.tokens, Some(Duration::ZERO))
            .map_err(io_err("epoll_wait on the ring"))?;
        let by = if self.note_wakeup() {
            WokenBy::Kernel
        } else {
            WokenBy::None
        };
        obs.woken(by);
        self.drain_quiet(obs, &mut drain, &ready).map(|(n, _)| n)
    }

    /// The body of every public `poll`: drains until quiet; if that delivered nothing (and no
    /// `Break`), sleeps in epoll up to `timeout` (`None`: forever) and drains again. Returns
    /// the records delivered (0 on timeout).
    pub(crate) fn poll<O, D, R>(
        &mut self,
        timeout: Option<Duration>,
        obs: &mut O,
        mut drain: D,
        ready: R,
    ) -> Result<usize, ConsumerError>
    where
        O: Observer,
        D: FnMut(&mut O) -> Result<Drain, ConsumerError>,
        R: Fn() -> bool,
    {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.clear_pending()?;
        obs.woken(WokenBy::None);
        let mut waited = false;
        loop {
            let (n, broke) = self.drain_quiet(obs, &mut drain, &ready)?;
            if n > 0 || broke {
                return Ok(n);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if waited && remaining == Some(Duration::ZERO) {
                return Ok(0);
            }
            // A wakeup that arrived while we were draining leaves the fd ready, so this can
            // return at once with nothing new: we then drain, find nothing and wait again.
            let got = self
                .epoll
                .wait(&mut self.tokens, remaining)
                .map_err(io_err("epoll_wait on the ring"))?;
            if self.tokens.contains(&PENDING) {
                self.clear_pending()?;
            }
            let by = if self.note_wakeup() {
                WokenBy::Kernel
            } else if got == 0 {
                WokenBy::Timeout
            } else {
                WokenBy::None
            };
            obs.woken(by);
            waited = true;
        }
    }
}
