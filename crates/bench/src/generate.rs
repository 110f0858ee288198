//! Realistic synthetic incident feeds: five agencies with their own mix of ICCS categories,
//! seasonality, populous départements weighing more, heavy-tailed losses, and a share of
//! amendments and withdrawals of recent incidents (so the fold does real work).
//!
//! Events are built with the model's own types and serialised by [`Envelope`], exactly as
//! the ingest does, so a raw publish sends the bytes the ingest would have sent.

use chrono::{DateTime, Days, NaiveDate, Utc};
use observatory_bus::Outgoing;
use observatory_model::{
    Channel, DEPARTEMENTS, DedupeKey, Envelope, Event, IncidentRecord, RevisionStamp, VictimType,
    validate_record,
};
use observatory_reference::{Crosswalk, Crosswalks, IDENTITY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

pub struct Agency {
    pub id: &'static str,
    pub name: &'static str,
    share: f64,
    /// Prefix of its incident ids, so ids look like what the agency's systems produce.
    id_prefix: &'static str,
    iccs: &'static [(&'static str, f64)],
}

pub const AGENCIES: &[Agency] = &[
    Agency {
        id: "pn",
        name: "Police nationale",
        share: 0.35,
        id_prefix: "PN/DDSP",
        iccs: &[
            ("0701", 0.40),
            ("07011", 0.12),
            ("09031", 0.10),
            ("09032", 0.05),
            ("0208", 0.15),
            ("0302", 0.08),
            ("0209", 0.05),
            ("0502", 0.05),
        ],
    },
    Agency {
        id: "gn",
        name: "Gendarmerie nationale",
        share: 0.25,
        id_prefix: "GN/GGD",
        iccs: &[
            ("0701", 0.45),
            ("07011", 0.10),
            ("09031", 0.10),
            ("09032", 0.05),
            ("0208", 0.12),
            ("0302", 0.08),
            ("0205", 0.05),
            ("0502", 0.05),
        ],
    },
    Agency {
        id: "pharos",
        name: "Online content-reporting platform",
        share: 0.20,
        id_prefix: "PHAROS/SIGNALEMENT",
        iccs: &[("0208", 0.35), ("0302", 0.30), ("0209", 0.15), ("0802", 0.10), ("0701", 0.10)],
    },
    Agency {
        id: "cybermalveillance",
        name: "Victim-assistance platform",
        share: 0.12,
        id_prefix: "CYBERMALVEILLANCE/ASSISTANCE",
        iccs: &[("09031", 0.30), ("09032", 0.25), ("0701", 0.30), ("0205", 0.15)],
    },
    Agency {
        id: "banks",
        name: "Banking federation card-fraud feed",
        share: 0.08,
        id_prefix: "FBF/CARTE",
        iccs: &[("07011", 0.70), ("0701", 0.20), ("0702", 0.10)],
    },
];

/// Relative monthly volume: a summer dip, an end-of-year peak (online shopping fraud).
const SEASON: [f64; 12] = [0.9, 0.85, 0.95, 0.95, 1.0, 0.95, 0.8, 0.75, 1.0, 1.1, 1.25, 1.4];
/// Years of occurrence; the query stage's "one year" is the last one.
pub const YEARS: [i32; 2] = [2023, 2024];
const VICTIMS: &[(VictimType, f64)] = &[
    (VictimType::Individual, 0.78),
    (VictimType::Business, 0.14),
    (VictimType::PublicBody, 0.03),
    (VictimType::Unknown, 0.05),
];
const CHANNELS: &[(Channel, f64)] = &[
    (Channel::Email, 0.18),
    (Channel::Sms, 0.14),
    (Channel::Phone, 0.12),
    (Channel::SocialNetwork, 0.16),
    (Channel::Messaging, 0.08),
    (Channel::Website, 0.12),
    (Channel::Marketplace, 0.08),
    (Channel::OnlineBanking, 0.07),
    (Channel::Other, 0.03),
    (Channel::Unknown, 0.02),
];
/// NATINF-like offence codes: agencies send their own codes next to ICCS.
const OFFENCE_CODES: &[&str] =
    &["7875", "7151", "20513", "10187", "22417", "23830", "12023", "7923", "25201"];
/// Amendments and withdrawals pick from this many recent incidents.
const RECENT: usize = 50_000;

/// Cumulative weights for O(log n) draws.
struct Weighted<T: Copy> {
    items: Vec<T>,
    cumulative: Vec<f64>,
}

impl<T: Copy> Weighted<T> {
    fn new(pairs: impl IntoIterator<Item = (T, f64)>) -> Weighted<T> {
        let mut items = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for (item, weight) in pairs {
            total += weight;
            items.push(item);
            cumulative.push(total);
        }
        Weighted { items, cumulative }
    }

    fn pick(&self, rng: &mut StdRng) -> T {
        let x = rng.r#gen::<f64>() * self.cumulative.last().copied().unwrap_or(0.0);
        let i = self.cumulative.partition_point(|&c| c <= x).min(self.items.len() - 1);
        self.items[i]
    }
}

/// What the generator remembers of a recent incident, to amend or withdraw it later.
struct Recent {
    agency: usize,
    id: String,
    revision: u32,
    /// The fields of its latest report; `None` while withdrawn.
    report: Option<Map<String, Value>>,
}

/// One generated record, the agency that sends it, and the event the ingest makes of it.
pub struct Generated {
    pub agency: usize,
    pub record: Map<String, Value>,
    pub event: Event,
}

impl Generated {
    pub fn source(&self) -> &'static str {
        AGENCIES[self.agency].id
    }

    /// The record as the agency sends it (one NDJSON line, without the newline).
    pub fn record_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.record).expect("records serialise")
    }

    /// The event as the ingest publishes it: same subject, headers and envelope bytes.
    pub fn outgoing(&self, recorded_at: DateTime<Utc>) -> Outgoing {
        let source = self.source();
        let envelope = Envelope::new(&self.event, source, recorded_at);
        let (id, revision) = self.event.incident().expect("generated events are about incidents");
        Outgoing::from_envelope(
            &envelope,
            DedupeKey::new(source, id, revision),
            RevisionStamp::of(source, &self.event).as_ref(),
        )
    }
}

pub struct Generator {
    rng: StdRng,
    agencies: Weighted<usize>,
    iccs: Vec<Weighted<&'static str>>,
    departements: Weighted<&'static str>,
    months: Weighted<u32>,
    victims: Weighted<&'static str>,
    channels: Weighted<&'static str>,
    serial: u64,
    recent: Vec<Recent>,
    next_slot: usize,
    last_day: NaiveDate,
    /// The day the records are validated on (after every generated date).
    today: NaiveDate,
    crosswalk: &'static Crosswalk,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        const BIG: &[&str] = &[
            "75", "13", "59", "69", "92", "93", "33", "94", "31", "44", "78", "91", "77", "62",
            "06", "95",
        ];
        let last_day = NaiveDate::from_ymd_opt(YEARS[YEARS.len() - 1], 12, 31).expect("valid date");
        Generator {
            rng: StdRng::seed_from_u64(seed),
            agencies: Weighted::new(AGENCIES.iter().enumerate().map(|(i, a)| (i, a.share))),
            iccs: AGENCIES.iter().map(|a| Weighted::new(a.iccs.iter().copied())).collect(),
            departements: Weighted::new(
                DEPARTEMENTS.iter().map(|&d| (d, if BIG.contains(&d) { 5.0 } else { 1.0 })),
            ),
            months: Weighted::new(SEASON.iter().enumerate().map(|(i, w)| (i as u32 + 1, *w))),
            victims: Weighted::new(VICTIMS.iter().map(|(v, w)| (v.as_str(), *w))),
            channels: Weighted::new(CHANNELS.iter().map(|(c, w)| (c.as_str(), *w))),
            serial: 0,
            recent: Vec::with_capacity(RECENT),
            next_slot: 0,
            last_day,
            today: Utc::now().date_naive().max(last_day + Days::new(1)),
            // Every bench agency sends ICCS codes (the default identity crosswalk).
            crosswalk: Crosswalks::builtin()
                .latest(IDENTITY)
                .expect("the identity crosswalk is built in"),
        }
    }

    /// The fields of a report, as an agency's record (without id and revision).
    fn report(&mut self, agency: usize) -> Map<String, Value> {
        let rng = &mut self.rng;
        let year = YEARS[rng.gen_range(0..YEARS.len())];
        let month = self.months.pick(rng);
        let occurred_on =
            NaiveDate::from_ymd_opt(year, month, rng.gen_range(1..=28)).expect("valid date");
        let occurred_until =
            rng.gen_bool(0.3).then(|| occurred_on + Days::new(rng.gen_range(0..20)));
        let reported_on = (occurred_until.unwrap_or(occurred_on) + Days::new(rng.gen_range(0..45)))
            .min(self.last_day);
        let iccs = self.iccs[agency].pick(rng);
        let cyber = iccs.starts_with("0903") || rng.gen_bool(0.85);
        let departement =
            if rng.gen_bool(0.03) { Value::Null } else { Value::from(self.departements.pick(rng)) };
        let mut record = Map::new();
        record.insert("occurred_on".into(), Value::from(occurred_on.to_string()));
        if let Some(until) = occurred_until {
            record.insert("occurred_until".into(), Value::from(until.min(reported_on).to_string()));
        }
        record.insert("reported_on".into(), Value::from(reported_on.to_string()));
        record.insert("iccs".into(), Value::from(iccs));
        record.insert(
            "offence_code".into(),
            Value::from(OFFENCE_CODES[rng.gen_range(0..OFFENCE_CODES.len())]),
        );
        record.insert("cyber".into(), Value::from(cyber));
        record.insert("departement".into(), departement);
        record.insert("victim_type".into(), Value::from(self.victims.pick(rng)));
        record.insert("channel".into(), Value::from(self.channels.pick(rng)));
        if iccs.starts_with("070") && rng.gen_bool(0.8) {
            // Heavy-tailed losses, whole cents.
            let cents = (rng.r#gen::<f64>().powi(3) * 500_000.0 + 500.0).round();
            record.insert("loss_eur".into(), Value::from(cents / 100.0));
        }
        record
    }

    fn finish(
        &self,
        agency: usize,
        id: &str,
        revision: u32,
        fields: Option<&Map<String, Value>>,
    ) -> Generated {
        let mut record = Map::new();
        record.insert("agency_incident_id".into(), Value::from(id));
        record.insert("revision".into(), Value::from(revision));
        match fields {
            Some(fields) => record.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone()))),
            None => {
                record.insert("withdrawn".into(), Value::Bool(true));
                record.insert("reason".into(), Value::from("reported twice by the victim"));
            }
        }
        // The model's own validation makes the event, exactly as the ingest does.
        let event = validate_record(&IncidentRecord::from(&record), self.today, self.crosswalk)
            .unwrap_or_else(|errors| panic!("generated record is invalid: {errors:?}: {record:?}"));
        Generated { agency, record, event }
    }

    /// About 5% amendments and 1% withdrawals of recent incidents, the rest new incidents.
    pub fn next_event(&mut self) -> Generated {
        let roll: f64 = self.rng.r#gen();
        if roll < 0.06 && self.recent.len() >= 100 {
            let slot = self.rng.gen_range(0..self.recent.len());
            self.recent[slot].revision += 1;
            let agency = self.recent[slot].agency;
            if roll < 0.01 && self.recent[slot].report.is_some() {
                self.recent[slot].report = None;
            } else {
                let fresh = self.report(agency);
                let amended = match self.recent[slot].report.take() {
                    // A re-report after a withdrawal.
                    None => fresh,
                    // An amendment moves the incident in time, in space or in the classification.
                    Some(mut old) => {
                        let moved: &[&str] = match self.rng.gen_range(0..3) {
                            0 => &["occurred_on", "occurred_until", "reported_on"],
                            1 => &["departement"],
                            _ => &["iccs", "cyber", "loss_eur"],
                        };
                        for name in moved {
                            match fresh.get(*name) {
                                Some(value) => old.insert((*name).to_owned(), value.clone()),
                                None => old.remove(*name),
                            };
                        }
                        old
                    }
                };
                self.recent[slot].report = Some(amended);
            }
            let recent = &self.recent[slot];
            return self.finish(agency, &recent.id, recent.revision, recent.report.as_ref());
        }
        let agency = self.agencies.pick(&mut self.rng);
        self.serial += 1;
        let unit = self.departements.pick(&mut self.rng);
        let id = format!(
            "{}-{unit}/{}/{:010}",
            AGENCIES[agency].id_prefix,
            YEARS[YEARS.len() - 1],
            self.serial
        );
        let fields = self.report(agency);
        let generated = self.finish(agency, &id, 1, Some(&fields));
        let recent = Recent { agency, id, revision: 1, report: Some(fields) };
        if self.recent.len() < RECENT {
            self.recent.push(recent);
        } else {
            self.recent[self.next_slot] = recent;
            self.next_slot = (self.next_slot + 1) % RECENT;
        }
        generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn records_are_realistic_and_keys_never_repeat() {
        let mut generator = Generator::new(7);
        let mut keys = HashSet::new();
        let (mut withdrawals, mut amendments) = (0, 0);
        for _ in 0..20_000 {
            let generated = generator.next_event();
            let (id, revision) = generated.event.incident().unwrap();
            assert!(keys.insert((generated.source(), id.to_owned(), revision)));
            let withdrawn = matches!(generated.event, Event::IncidentWithdrawn(_));
            withdrawals += withdrawn as u32;
            amendments += (revision > 1 && !withdrawn) as u32;
            // Withdrawals carry no report, so they are the short ones.
            let bytes = generated.outgoing(Utc::now()).payload.len();
            let lower = if withdrawn { 200 } else { 300 };
            // IncidentReported v2 envelopes add `"unit"` (and `coding` for crosswalk-coded
            // feeds) to the 300–500 bytes of a v1 event.
            assert!((lower..=540).contains(&bytes), "{bytes} bytes");
        }
        assert!(
            withdrawals > 100 && amendments > 800,
            "{withdrawals} withdrawals, {amendments} amendments"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_feed() {
        let (mut a, mut b) = (Generator::new(3), Generator::new(3));
        for _ in 0..1000 {
            assert_eq!(a.next_event().record, b.next_event().record);
        }
    }
}
