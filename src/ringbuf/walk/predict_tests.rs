//! The predicting walk against a plain reference walk, over fake rings with runs of one
//! size, size changes inside a lookahead batch, BUSY and DISCARD records, corrupt headers
//! and the wrap; and the early release of a slow callback's records.

use std::ops::ControlFlow;

use super::fake::FakeRing;
use super::*;
use crate::consumer::NoObserver;

/// A deterministic pseudo-random sequence (no dependency for tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Normal,
    Discard,
    Busy,
}

/// What the walk must do: records in order up to the first BUSY one, discarded ones
/// skipped; the consumer position ends at that BUSY record (or the end).
fn reference(recs: &[(Vec<u8>, Kind, u64)], end: u64) -> (Vec<Vec<u8>>, u64) {
    let mut out = Vec::new();
    for (payload, kind, pos) in recs {
        match kind {
            Kind::Busy => return (out, *pos),
            Kind::Discard => {}
            Kind::Normal => out.push(payload.clone()),
        }
    }
    (out, end)
}

fn run_case(seed: u64, size: u64) {
    let mut rng = Lcg(seed);
    let start = size * 3 + (rng.next() % (size / 8)) * 8;
    let ring = FakeRing::at(size, start);
    // Mostly one size (the tracer's case), with changes, discards and a rare BUSY.
    let sizes = [24usize, 24, 24, 24, 24, 24, 7, 56, 24, 100];
    let mut recs = Vec::new();
    let mut run = sizes[(rng.next() % sizes.len() as u64) as usize];
    let mut n = 0u32;
    while ring.prod() - start + 128 + 16 < size {
        if rng.next().is_multiple_of(6) {
            run = sizes[(rng.next() % sizes.len() as u64) as usize];
        }
        let mut payload = vec![n as u8; run];
        payload[0] = (n >> 8) as u8;
        let kind = match rng.next() % 40 {
            0 => Kind::Busy,
            1..=4 => Kind::Discard,
            _ => Kind::Normal,
        };
        let flags = match kind {
            Kind::Busy => BUSY_BIT,
            Kind::Discard => DISCARD_BIT,
            Kind::Normal => 0,
        };
        let pos = ring.push_raw(&payload, flags, run as u32);
        recs.push((payload, kind, pos));
        n += 1;
    }
    let (want, want_end) = reference(&recs, ring.prod());
    let mut got = Vec::new();
    let d = ring
        .view()
        .drain(&mut NoObserver, &mut |r: &[u8]| {
            got.push(r.to_vec());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(got.len(), want.len(), "seed {seed}: count");
    assert_eq!(got, want, "seed {seed}: records");
    assert_eq!(d.delivered, want.len());
    assert_eq!(ring.cons(), want_end, "seed {seed}: consumer_pos");
}

#[test]
fn prediction_matches_the_reference_walk() {
    for seed in 0..400 {
        run_case(seed, 4096);
    }
    for seed in 0..50 {
        run_case(seed + 1000, 64 * 1024);
    }
}

#[test]
fn a_size_change_inside_a_batch_is_caught() {
    // Eight 16-byte records then a 40-byte one then 16s again: the batch that predicted
    // 16 bytes for record 8 loaded the wrong places after it.
    let ring = FakeRing::new(4096);
    let mut want = Vec::new();
    for i in 0..20u8 {
        let p = if i == 8 { vec![i; 32] } else { vec![i; 8] };
        ring.push(&p);
        want.push(p);
    }
    let mut got = Vec::new();
    ring.view()
        .drain(&mut NoObserver, &mut |r: &[u8]| {
            got.push(r.to_vec());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(ring.cons(), ring.prod());
}

#[test]
fn a_busy_record_in_a_run_stops_the_batch() {
    let ring = FakeRing::new(4096);
    for i in 0..3u8 {
        ring.push(&[i; 8]);
    }
    let busy = ring.push_raw(&[9; 8], BUSY_BIT, 8);
    for i in 4..10u8 {
        ring.push(&[i; 8]); // committed after a BUSY one: must not be read yet
    }
    let mut got = Vec::new();
    let view = ring.view();
    view.drain(&mut NoObserver, &mut |r: &[u8]| {
        got.push(r[0]);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, vec![0, 1, 2]);
    assert_eq!(ring.cons(), busy);
    ring.set_flags(busy, 8, 0);
    got.clear();
    view.drain(&mut NoObserver, &mut |r: &[u8]| {
        got.push(r[0]);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, vec![9, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn a_corrupt_header_in_a_run_is_an_error_at_its_position() {
    let ring = FakeRing::new(4096);
    for i in 0..5u8 {
        ring.push(&[i; 8]);
    }
    let bad = ring.push_raw(&[0; 8], 0, 5000);
    ring.push(&[7; 8]);
    let mut got = 0;
    let r = ring.view().drain(&mut NoObserver, &mut |_r: &[u8]| {
        got += 1;
        ControlFlow::Continue(())
    });
    assert_eq!(got, 5);
    assert!(matches!(r, Err(ConsumerError::CorruptRing { pos, .. }) if pos == bad));
    assert_eq!(ring.cons(), bad);
}

/// A slow callback: when it is handed a record, everything more than RELEASE_BYTES before
/// that record has already been given back to the producer.
#[test]
fn records_are_released_while_the_walk_goes_on() {
    let ring = FakeRing::new(256 * 1024);
    let mut positions = Vec::new();
    for i in 0..1500u32 {
        let len = if i % 100 == 99 { 5000 } else { 24 };
        positions.push(ring.push(&vec![i as u8; len]));
    }
    let mut k = 0;
    let mut worst = 0;
    let mut stores = 0;
    let mut last = ring.cons();
    ring.view()
        .drain(&mut NoObserver, &mut |_r: &[u8]| {
            let held = positions[k] - ring.cons();
            worst = worst.max(held);
            if ring.cons() != last {
                stores += 1;
                last = ring.cons();
            }
            k += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(k, 1500);
    assert!(worst < RELEASE_BYTES + 5016, "held {worst}");
    // A store once 4 KiB are read (here: after each 5000-byte record, which follows 99
    // small ones), not one per record.
    assert!(stores >= 14, "{stores} stores");
    assert!(
        stores < 1500 / 10,
        "{stores} stores: not one per small record"
    );
}
