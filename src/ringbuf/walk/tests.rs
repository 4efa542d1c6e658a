//! Unit tests for the ring walk, on a heap-backed fake ring.

use super::fake::FakeRing;
use super::*;
use crate::consumer::NoObserver;

fn collect(view: &RingView) -> (Vec<Vec<u8>>, Result<Drain, ConsumerError>) {
    let mut got = Vec::new();
    let r = view.drain(&mut NoObserver, &mut |rec: &[u8]| {
        got.push(rec.to_vec());
        ControlFlow::Continue(())
    });
    (got, r)
}

#[test]
fn empty_ring_delivers_nothing() {
    let ring = FakeRing::new(64);
    let (got, r) = collect(&ring.view());
    assert!(got.is_empty());
    assert_eq!(r.unwrap(), Drain::default());
    assert_eq!(ring.cons(), 0);
}

#[test]
fn records_in_order_with_alignment() {
    let ring = FakeRing::new(128);
    ring.push(b"a");
    ring.push(b"12345678");
    ring.push(b"123456789");
    assert_eq!(ring.prod(), 16 + 16 + 24);
    let (got, r) = collect(&ring.view());
    assert_eq!(r.unwrap().delivered, 3);
    assert_eq!(
        got,
        vec![b"a".to_vec(), b"12345678".to_vec(), b"123456789".to_vec()]
    );
    assert_eq!(ring.cons(), ring.prod());
    assert_eq!(ring.view().available(), 0);
}

#[test]
fn busy_stops_the_walk_until_committed() {
    let ring = FakeRing::new(128);
    ring.push(b"first");
    let busy = ring.push_raw(b"second", BUSY_BIT, 6);
    ring.push(b"third");
    let view = ring.view();
    let (got, r) = collect(&view);
    assert_eq!(r.unwrap().delivered, 1);
    assert_eq!(got, vec![b"first".to_vec()]);
    assert_eq!(ring.cons(), busy, "consumer stops at the busy record");
    assert!(!view.head_committed());
    assert!(view.available() > 0);
    ring.set_flags(busy, 6, 0);
    assert!(view.head_committed());
    let (got, r) = collect(&view);
    assert_eq!(r.unwrap().delivered, 2);
    assert_eq!(got, vec![b"second".to_vec(), b"third".to_vec()]);
}

#[test]
fn consumer_pos_is_published_once_per_drain() {
    let ring = FakeRing::new(256);
    for p in [&b"a"[..], b"bb", b"ccc", b"dddd"] {
        ring.push(p);
    }
    let mut seen = Vec::new();
    ring.view()
        .drain(&mut NoObserver, &mut |_rec: &[u8]| {
            seen.push(ring.cons());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, vec![0, 0, 0, 0], "no store while walking");
    assert_eq!(ring.cons(), ring.prod());
}

#[test]
fn discard_is_skipped_but_consumed() {
    let ring = FakeRing::new(128);
    ring.push_raw(b"dropped!", DISCARD_BIT, 8);
    ring.push(b"kept");
    let (got, r) = collect(&ring.view());
    assert_eq!(r.unwrap().delivered, 1);
    assert_eq!(got, vec![b"kept".to_vec()]);
    assert_eq!(ring.cons(), ring.prod());
}

#[test]
fn discard_only_ring_is_consumed() {
    let ring = FakeRing::new(64);
    ring.push_raw(b"x", DISCARD_BIT, 1);
    let (got, r) = collect(&ring.view());
    assert!(got.is_empty());
    assert_eq!(r.unwrap().delivered, 0);
    assert_eq!(ring.cons(), 16);
}

#[test]
fn record_wrapping_the_end_is_contiguous() {
    // Start near the end of a 64-byte ring: a 24-byte payload at offset 48 runs past it.
    let ring = FakeRing::at(64, 64 * 1000 + 48);
    let payload: Vec<u8> = (0u8..24).collect();
    ring.push(&payload);
    ring.push(b"after");
    let (got, r) = collect(&ring.view());
    assert_eq!(r.unwrap().delivered, 2);
    assert_eq!(got, vec![payload, b"after".to_vec()]);
    assert_eq!(ring.cons(), 64 * 1000 + 48 + 32 + 16);
}

#[test]
fn many_laps_keep_order() {
    let ring = FakeRing::new(64);
    let view = ring.view();
    for lap in 0u32..500 {
        let len = (lap % 13) as usize;
        let payload: Vec<u8> = (0..len)
            .map(|i| (lap as u8).wrapping_add(i as u8))
            .collect();
        ring.push(&payload);
        let (got, r) = collect(&view);
        assert_eq!(r.unwrap().delivered, 1);
        assert_eq!(got, vec![payload]);
    }
}

/// Enough data pending that the walk prefetches ahead (past the ring's end too, where the
/// prefetch position wraps), over many laps of a ring of 4 KiB: every record arrives
/// whole and in order.
#[test]
fn long_walks_with_prefetch_keep_order_across_laps() {
    let ring = FakeRing::new(4096);
    let view = ring.view();
    let mut next = 0u32;
    let mut expect = 0u32;
    for _lap in 0..40 {
        // Fill to about 3.5 KiB (more than PREFETCH_AHEAD) with records of varying size.
        while ring.prod() - ring.cons() < 3500 {
            let len = 1 + (next % 61) as usize;
            let mut payload = next.to_ne_bytes().to_vec();
            payload.resize(len.max(4), next as u8);
            ring.push(&payload);
            next += 1;
        }
        assert!(ring.prod() - ring.cons() > PREFETCH_AHEAD);
        let (got, r) = collect(&view);
        assert_eq!(r.unwrap().delivered, got.len());
        for rec in got {
            let seq = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
            assert_eq!(seq, expect);
            assert_eq!(rec.len(), (1 + (seq % 61) as usize).max(4));
            assert!(rec[4..].iter().all(|&b| b == seq as u8));
            expect += 1;
        }
        assert_eq!(ring.cons(), ring.prod());
    }
    assert_eq!(expect, next);
}

/// Positions near the top of u64 (a corrupt or very old ring): the prefetch bound must
/// not overflow (a debug build would panic), and the record still arrives.
#[test]
fn positions_near_u64_max_do_not_overflow() {
    let ring = FakeRing::at(64, u64::MAX - 63);
    ring.push(b"12345678");
    let (got, r) = collect(&ring.view());
    assert_eq!(r.unwrap().delivered, 1);
    assert_eq!(got, vec![b"12345678".to_vec()]);
    assert_eq!(ring.cons(), u64::MAX - 63 + 16);
}

#[test]
fn break_leaves_the_rest() {
    let ring = FakeRing::new(128);
    for p in [b"one", b"two", b"six"] {
        ring.push(p);
    }
    let view = ring.view();
    let mut seen = Vec::new();
    let d = view
        .drain(&mut NoObserver, &mut |rec: &[u8]| {
            seen.push(rec.to_vec());
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(
        d,
        Drain {
            delivered: 1,
            broke: true
        }
    );
    assert_eq!(seen, vec![b"one".to_vec()]);
    assert_eq!(
        ring.cons(),
        16,
        "the record handed out is consumed, the rest is not"
    );
    let (got, _) = collect(&view);
    assert_eq!(got, vec![b"two".to_vec(), b"six".to_vec()]);
}

#[test]
fn bad_len_is_an_error_and_good_records_before_it_are_kept() {
    let ring = FakeRing::new(64);
    ring.push(b"ok");
    // A header claiming more than the ring holds.
    let bad = ring.push_raw(b"zz", 0, 1000);
    let view = ring.view();
    let (got, r) = collect(&view);
    assert_eq!(got, vec![b"ok".to_vec()]);
    match r {
        Err(ConsumerError::CorruptRing { pos, len, .. }) => {
            assert_eq!((pos, len), (bad, 1000));
        }
        other => panic!("expected CorruptHeader, got {other:?}"),
    }
    assert_eq!(ring.cons(), bad);
    // Still an error next time, never a read out of bounds.
    assert!(collect(&view).1.is_err());
}

#[test]
fn len_beyond_producer_is_an_error() {
    let ring = FakeRing::new(256);
    // Header says 100 bytes but the producer only advanced by 16.
    ring.push_raw(b"abc", 0, 100);
    assert!(matches!(
        collect(&ring.view()).1,
        Err(ConsumerError::CorruptRing { .. })
    ));
    // Both flag bits are masked off before the check: BUSY|DISCARD|len must not be
    // mistaken for a huge length when BUSY is clear.
    let ring = FakeRing::new(64);
    ring.push_raw(b"abcd", DISCARD_BIT, 4);
    assert_eq!(collect(&ring.view()).1.unwrap().delivered, 0);
}
