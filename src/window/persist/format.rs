//! How a [`Snapshot`] becomes bytes: a compact binary format and JSON.

use jiff::Timestamp;
use jiff::civil::Weekday;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::window::calendar::{CalendarId, Unit, UnitExt};
use crate::window::error::WindowError;
use crate::window::ring::MAX_BUCKETS;
use crate::window::snapshot::{RingSnapshot, Snapshot};

/// Encodes and decodes stored counters. Both built-in formats read either format, so a store
/// can switch formats over existing data.
pub trait Format: Send + Sync + 'static {
    /// Appends the encoding of `snapshot` to `out`.
    fn encode(&self, snapshot: &Snapshot, out: &mut Vec<u8>);

    /// Decodes what [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    ///
    /// [`WindowError::Decode`] for bytes that are not a valid encoding.
    fn decode(&self, bytes: &[u8]) -> Result<Snapshot, WindowError>;
}

/// The default: versioned, varint-encoded, zero runs collapsed. A key with a few events in the
/// default 256 buckets takes about 40 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BinaryFormat;

/// Human-readable JSON (`{"version":1,"time_zone":"UTC",…,"units":[{"unit":"minutes",…}]}`).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormat;

const MAGIC: u8 = 0xA7;
const VERSION: u8 = 1;

impl Format for BinaryFormat {
    fn encode(&self, s: &Snapshot, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.push(VERSION);
        put_varint(out, s.calendar.zone.len() as u64);
        out.extend_from_slice(s.calendar.zone.as_bytes());
        out.push(s.calendar.week_start.to_monday_one_offset() as u8);
        out.push(u8::from(s.first_seen.is_some()) | (u8::from(s.last_seen.is_some()) << 1));
        for t in [s.first_seen, s.last_seen].into_iter().flatten() {
            put_varint(out, zigzag(t.as_second()));
            put_varint(out, zigzag(i64::from(t.subsec_nanosecond())));
        }
        out.push(s.rings.len() as u8);
        for r in &s.rings {
            out.push(r.unit.ordinal() as u8);
            put_varint(out, r.counts.len() as u64);
            put_varint(out, zigzag(r.newest));
            let mut zeros = 0u64;
            for &c in &r.counts {
                if c == 0 {
                    zeros += 1;
                    continue;
                }
                if zeros > 0 {
                    out.push(0);
                    put_varint(out, zeros);
                    zeros = 0;
                }
                put_varint(out, c);
            }
            if zeros > 0 {
                out.push(0);
                put_varint(out, zeros);
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Snapshot, WindowError> {
        if bytes.first() == Some(&b'{') {
            return JsonFormat.decode(bytes);
        }
        let mut r = Reader(bytes);
        if r.byte()? != MAGIC {
            return Err(bad("not a windowed counter"));
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version} (this build reads {VERSION})"
            )));
        }
        let zone_len = usize::try_from(r.varint()?).map_err(|_| bad("zone length"))?;
        let zone = std::str::from_utf8(r.take(zone_len)?)
            .map_err(|_| bad("zone name is not UTF-8"))?
            .to_owned();
        let week_start =
            Weekday::from_monday_one_offset(r.byte()? as i8).map_err(|_| bad("week start"))?;
        let flags = r.byte()?;
        let mut seen = [None, None];
        for (i, slot) in seen.iter_mut().enumerate() {
            if flags & (1 << i) != 0 {
                let secs = unzigzag(r.varint()?);
                let nanos = i32::try_from(unzigzag(r.varint()?)).map_err(|_| bad("nanoseconds"))?;
                *slot =
                    Some(Timestamp::new(secs, nanos).map_err(|_| bad("timestamp out of range"))?);
            }
        }
        let n = r.byte()?;
        let mut rings = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let unit = Unit::from_ordinal(r.byte()?).ok_or_else(|| bad("unknown unit"))?;
            let len = r.varint()?;
            if len == 0 || len > MAX_BUCKETS as u64 {
                return Err(bad("ring length"));
            }
            let len = len as usize;
            let newest = unzigzag(r.varint()?);
            let mut counts = Vec::with_capacity(len);
            while counts.len() < len {
                match r.varint()? {
                    0 => {
                        let run = r.varint()?;
                        if run == 0 || run > (len - counts.len()) as u64 {
                            return Err(bad("zero run"));
                        }
                        counts.resize(counts.len() + run as usize, 0);
                    }
                    c => counts.push(c),
                }
            }
            rings.push(RingSnapshot {
                unit,
                newest,
                counts,
            });
        }
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let s = Snapshot {
            calendar: CalendarId { zone, week_start },
            first_seen: seen[0],
            last_seen: seen[1],
            rings,
        };
        s.validate()?;
        Ok(s)
    }
}

impl Format for JsonFormat {
    fn encode(&self, s: &Snapshot, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &JsonSnapshot::from(s)).expect("writing JSON to memory");
    }

    fn decode(&self, bytes: &[u8]) -> Result<Snapshot, WindowError> {
        if bytes.first() == Some(&MAGIC) {
            return BinaryFormat.decode(bytes);
        }
        let j: JsonSnapshot =
            serde_json::from_slice(bytes).map_err(|e| bad(&format!("JSON: {e}")))?;
        j.into_snapshot()
    }
}

fn bad(msg: &str) -> WindowError {
    WindowError::Decode(msg.to_owned())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WindowError> {
        let (&b, rest) = self.0.split_first().ok_or_else(|| bad("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WindowError> {
        if n > self.0.len() {
            return Err(bad("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, WindowError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    return Err(bad("varint overflow"));
                }
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

/// The JSON shape of a snapshot.
#[derive(Serialize, Deserialize)]
struct JsonSnapshot {
    version: u32,
    time_zone: String,
    week_start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    units: Vec<JsonRing>,
}

#[derive(Serialize, Deserialize)]
struct JsonRing {
    unit: String,
    /// Calendar index of the newest bucket.
    newest: i64,
    /// Counts, newest first.
    counts: Vec<u64>,
}

impl From<&Snapshot> for JsonSnapshot {
    fn from(s: &Snapshot) -> Self {
        Self {
            version: u32::from(VERSION),
            time_zone: s.calendar.zone.clone(),
            week_start: weekday_name(s.calendar.week_start).to_owned(),
            first_seen: s.first_seen.map(|t| t.to_string()),
            last_seen: s.last_seen.map(|t| t.to_string()),
            units: s
                .rings
                .iter()
                .map(|r| JsonRing {
                    unit: r.unit.name().to_owned(),
                    newest: r.newest,
                    counts: r.counts.clone(),
                })
                .collect(),
        }
    }
}

impl JsonSnapshot {
    fn into_snapshot(self) -> Result<Snapshot, WindowError> {
        if self.version != u32::from(VERSION) {
            return Err(bad(&format!("format version {}", self.version)));
        }
        let week_start = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ]
        .into_iter()
        .find(|d| weekday_name(*d) == self.week_start)
        .ok_or_else(|| bad("week start"))?;
        let ts = |s: Option<String>| -> Result<Option<Timestamp>, WindowError> {
            s.map(|s| s.parse().map_err(|_| bad("timestamp")))
                .transpose()
        };
        let rings = self
            .units
            .into_iter()
            .map(|r| {
                Ok(RingSnapshot {
                    unit: Unit::from_name(&r.unit).ok_or_else(|| bad("unknown unit"))?,
                    newest: r.newest,
                    counts: r.counts,
                })
            })
            .collect::<Result<Vec<_>, WindowError>>()?;
        let s = Snapshot {
            calendar: CalendarId {
                zone: self.time_zone,
                week_start,
            },
            first_seen: ts(self.first_seen)?,
            last_seen: ts(self.last_seen)?,
            rings,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Serializes as the JSON format's shape.
impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        JsonSnapshot::from(self).serialize(serializer)
    }
}

/// Deserializes the JSON format's shape, validated.
impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonSnapshot::deserialize(deserializer)?
            .into_snapshot()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            calendar: CalendarId {
                zone: "Europe/Paris".into(),
                week_start: Weekday::Sunday,
            },
            first_seen: Some("1969-12-31T23:59:59.5Z".parse().unwrap()),
            last_seen: Some("2025-03-05T12:00:00.123456789Z".parse().unwrap()),
            rings: vec![
                RingSnapshot {
                    unit: Unit::Minute,
                    newest: 29_000_000,
                    counts: vec![0, 0, 3, u64::MAX, 0, 1, 0, 0],
                },
                RingSnapshot {
                    unit: Unit::Year,
                    newest: -3,
                    counts: vec![7],
                },
            ],
        }
    }

    #[test]
    fn both_formats_round_trip_and_read_each_other() {
        let s = sample();
        for (fmt, other) in [
            (&BinaryFormat as &dyn Format, &JsonFormat as &dyn Format),
            (&JsonFormat, &BinaryFormat),
        ] {
            let mut buf = Vec::new();
            fmt.encode(&s, &mut buf);
            assert_eq!(fmt.decode(&buf).unwrap(), s);
            assert_eq!(other.decode(&buf).unwrap(), s);
        }
        let mut buf = Vec::new();
        BinaryFormat.encode(&s, &mut buf);
        assert!(buf.len() < 70, "{}", buf.len());
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let mut buf = Vec::new();
        BinaryFormat.encode(&sample(), &mut buf);
        for cut in 0..buf.len() {
            assert!(BinaryFormat.decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x55;
            let _ = BinaryFormat.decode(&b);
        }
        let mut long = buf.clone();
        long.push(0);
        assert!(BinaryFormat.decode(&long).is_err());
        assert!(JsonFormat.decode(b"{\"version\":2}").is_err());
    }
}
