//! The constant-rate schedule: when each record is meant to be sent.
//!
//! Latency counts from the intended send time, not from when the record was actually sent. If
//! the broker stalls for a second, the records that should have gone out during that second are
//! sent late, and each of them carries the stall in its latency. Measuring from the actual send
//! time instead would hide the stall ("coordinated omission": the generator slows down with the
//! broker and only samples the good moments).
//!
//! The records of all producers form one global sequence `g = i * producers + producer`, and
//! record `g` is due `g / rate` seconds after the start, so the producers interleave evenly and
//! the total rate is exact. The arithmetic is in integers, so the schedule never drifts.

const NANOS_PER_S: u128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Total records per second over all producers.
    rate_per_s: u64,
    producers: u32,
    producer: u32,
}

impl Schedule {
    pub fn new(rate_per_s: u64, producers: u32, producer: u32) -> Schedule {
        assert!(rate_per_s > 0 && producers > 0 && producer < producers, "schedule {rate_per_s}/s for producer {producer} of {producers}");
        Schedule { rate_per_s, producers, producer }
    }

    /// Nanoseconds after the start at which this producer's record `i` is due.
    pub fn intended_ns(&self, i: u64) -> u64 {
        let global = i as u128 * self.producers as u128 + self.producer as u128;
        (global * NANOS_PER_S / self.rate_per_s as u128) as u64
    }

    /// How many of this producer's records are due at `elapsed_ns` after the start (records
    /// `0..n` have intended times at or before it).
    pub fn due_count(&self, elapsed_ns: u64) -> u64 {
        // Largest global g with g * 1e9 / rate <= elapsed (floor division): g * 1e9 < (elapsed + 1) * rate.
        let limit = (elapsed_ns as u128 + 1) * self.rate_per_s as u128;
        let globals_due = limit.div_ceil(NANOS_PER_S); // number of g >= 0 with g * 1e9 < limit
        let producers = self.producers as u128;
        let producer = self.producer as u128;
        if globals_due <= producer {
            return 0;
        }
        ((globals_due - producer).div_ceil(producers)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_producer_is_evenly_spaced() {
        let s = Schedule::new(1000, 1, 0);
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.intended_ns(1000), 1_000_000_000);
        assert_eq!(s.due_count(0), 1);
        assert_eq!(s.due_count(999_999), 1);
        assert_eq!(s.due_count(1_000_000), 2);
        assert_eq!(s.due_count(1_000_000_000), 1001);
    }

    #[test]
    fn producers_interleave_and_sum_to_the_rate() {
        let producers = 3;
        let schedules: Vec<Schedule> = (0..producers).map(|p| Schedule::new(1000, producers, p)).collect();
        assert_eq!(schedules[0].intended_ns(0), 0);
        assert_eq!(schedules[1].intended_ns(0), 1_000_000);
        assert_eq!(schedules[2].intended_ns(0), 2_000_000);
        assert_eq!(schedules[0].intended_ns(1), 3_000_000);
        // One second holds 1000 records in total (1001 counting both ends).
        let total: u64 = schedules.iter().map(|s| s.due_count(999_999_999)).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn due_count_agrees_with_intended_times() {
        // A rate that does not divide a second evenly.
        for producers in 1..4 {
            for producer in 0..producers {
                let s = Schedule::new(7_777, producers, producer);
                for elapsed in (0..3_000_000u64).step_by(12_345) {
                    let n = s.due_count(elapsed);
                    if n > 0 {
                        assert!(s.intended_ns(n - 1) <= elapsed);
                    }
                    assert!(s.intended_ns(n) > elapsed, "producer {producer}/{producers} at {elapsed}: {n} due");
                }
            }
        }
    }

    #[test]
    fn the_schedule_does_not_drift() {
        // After an hour at 333,333 records/s the last record is due exactly an hour in.
        let s = Schedule::new(333_333, 1, 0);
        assert_eq!(s.intended_ns(333_333 * 3600), 3600 * 1_000_000_000);
    }
}
