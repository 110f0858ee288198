//! The request the CLI builds from its flags, and the report it prints.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::design::{JackknifeKind, LonelyPsu, RepType};
use crate::error::StatsError;
use crate::table::Table;

/// One statistic to estimate (`--mean COL`, `--total COL`, `--prop COL`, `--ratio NUM/DEN`).
/// A text column given to `Mean` or `Total` is treated as categorical: one estimate per level,
/// as `svymean(~factor(x))` / `svytotal(~factor(x))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatisticSpec {
    Mean(String),
    Total(String),
    Prop(String),
    Ratio { numerator: String, denominator: String },
}

impl StatisticSpec {
    /// Parses `NUM/DEN` for `--ratio`. Column names may themselves contain '/': the split is the
    /// one where both sides are columns of `table`.
    pub fn parse_ratio(arg: &str, table: &Table) -> Result<StatisticSpec, StatsError> {
        let splits: Vec<(usize, char)> = arg.char_indices().filter(|&(_, c)| c == '/').collect();
        for &(i, _) in &splits {
            let (num, den) = (&arg[..i], &arg[i + 1..]);
            if table.column(num).is_some() && table.column(den).is_some() {
                return Ok(StatisticSpec::Ratio {
                    numerator: num.to_string(),
                    denominator: den.to_string(),
                });
            }
        }
        match splits.first() {
            None => Err(StatsError::invalid(format!(
                "--ratio needs NUMERATOR/DENOMINATOR, got '{arg}'"
            ))),
            Some(&(i, _)) => {
                let (num, den) = (&arg[..i], &arg[i + 1..]);
                let missing = if table.column(num).is_none() { num } else { den };
                table.require(missing, "ratio")?;
                unreachable!("require fails for a missing column")
            }
        }
    }
}

/// Confidence-interval method (`--ci`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CiMethod {
    /// The default: `logit` for `prop` statistics (as `svyciprop`, whose interval stays in
    /// [0, 1]), `t` for the others. An estimate reports the method actually used.
    #[default]
    Auto,
    /// estimate ± qnorm(1 - α/2) · SE (R's `confint()` default).
    Wald,
    /// estimate ± qt(1 - α/2, df) · SE with df = `degf`.
    T,
    /// `svyciprop(method = "logit")`; proportions only (others fall back to `t`).
    Logit,
    /// `svyciprop(method = "beta")` (Korn-Graubard); proportions only (others fall back to `t`).
    Beta,
}

impl FromStr for CiMethod {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, StatsError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(CiMethod::Auto),
            "wald" => Ok(CiMethod::Wald),
            "t" => Ok(CiMethod::T),
            "logit" => Ok(CiMethod::Logit),
            "beta" => Ok(CiMethod::Beta),
            other => Err(StatsError::invalid(format!(
                "unknown CI method '{other}'; use auto, wald, t, logit or beta (Korn-Graubard)"
            ))),
        }
    }
}

impl fmt::Display for CiMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CiMethod::Auto => "auto",
            CiMethod::Wald => "wald",
            CiMethod::T => "t",
            CiMethod::Logit => "logit",
            CiMethod::Beta => "beta",
        })
    }
}

/// When an estimate is flagged as unreliable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// Flag `low_n` when the unweighted n is at most this.
    pub min_n: u64,
    /// Flag `high_cv` when |SE / estimate| exceeds this.
    pub max_cv: f64,
}

impl Default for Reliability {
    fn default() -> Self {
        Reliability { min_n: 10, max_cv: 0.5 }
    }
}

/// Everything `estimate()` needs; one field per CLI flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateRequest {
    /// `--weights COL`
    pub weights: Option<String>,
    /// `--strata COL`
    pub strata: Option<String>,
    /// `--cluster COL`, one per stage
    pub clusters: Vec<String>,
    /// `--fpc COL`, one per stage
    pub fpc: Vec<String>,
    /// PSU ids repeat across strata (R's `nest = TRUE`); not a CLI flag in the first version.
    #[serde(default)]
    pub nest: bool,
    /// `--lonely-psu MODE`
    pub lonely_psu: LonelyPsu,
    /// `--repweights REGEX`
    pub repweights: Option<String>,
    /// `--reptype TYPE`
    pub reptype: Option<RepType>,
    /// `--scale X`
    pub scale: Option<f64>,
    /// `--rscales X[,X…]`
    pub rscales: Option<Vec<f64>>,
    /// `--mse`
    pub mse: bool,
    /// `--replicates jk1|jkn`: jackknife weights built from the linearisation design.
    pub replicates: Option<JackknifeKind>,
    pub statistics: Vec<StatisticSpec>,
    /// `--by COL`…
    pub by: Vec<String>,
    pub ci: CiMethod,
    /// `--level`
    pub level: f64,
    #[serde(default)]
    pub reliability: Reliability,
    /// Declared range (min, max) of variables: an interval that leaves the range its
    /// statistic can take is flagged `ci_outside_range`. Proportions always lie in [0, 1].
    #[serde(default)]
    pub ranges: BTreeMap<String, (Option<f64>, Option<f64>)>,
}

impl Default for EstimateRequest {
    fn default() -> Self {
        EstimateRequest {
            weights: None,
            strata: None,
            clusters: Vec::new(),
            fpc: Vec::new(),
            nest: false,
            lonely_psu: LonelyPsu::Fail,
            repweights: None,
            reptype: None,
            scale: None,
            rscales: None,
            mse: false,
            replicates: None,
            statistics: Vec::new(),
            by: Vec::new(),
            ci: CiMethod::Auto,
            level: 0.95,
            reliability: Reliability::default(),
            ranges: BTreeMap::new(),
        }
    }
}

/// Output of `estimate()`: `{"estimates": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateReport {
    pub estimates: Vec<Estimate>,
}

/// One estimate with its uncertainty. Undefined quantities (a CV at estimate 0, a design effect
/// whose reference variance is 0 or negative population, a CI without degrees of freedom) are
/// `null` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// "mean", "total", "prop" or "ratio".
    pub statistic: String,
    /// Column name; "NUM/DEN" for ratios.
    pub variable: String,
    /// Level of a categorical variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Values of the `--by` columns defining the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
    #[serde(with = "nan_as_null")]
    pub estimate: f64,
    #[serde(with = "nan_as_null")]
    pub se: f64,
    #[serde(with = "nan_as_null")]
    pub var: f64,
    pub cv: Option<f64>,
    pub deff: Option<f64>,
    pub deff_replace: Option<f64>,
    /// Degrees of freedom (`degf` of the design, or of the domain subset R's `svyby` works on).
    pub df: i64,
    /// Unweighted number of rows contributing (in the domain, value not missing).
    pub n: u64,
    pub ci_lower: Option<f64>,
    pub ci_upper: Option<f64>,
    /// The method actually used (`t` when logit/beta were asked for a non-proportion).
    pub ci_method: CiMethod,
    /// Reliability and CI warnings: "low_n", "high_cv", "no_df", "ci_undefined" (no interval:
    /// no variance, or a proportion of 0 or 1), "ci_outside_range" (the interval leaves the
    /// range the statistic can take: [0, 1] for a proportion, the declared range for a mean).
    pub flags: Vec<String>,
}

/// JSON has no NaN: an undefined value (R's NA, e.g. a variance with `--lonely-psu average`
/// and a lonely unit at stage 2) is written as `null` and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Ordered (column, value) pairs; serialises as a JSON object in `--by` order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Domain(pub Vec<(String, String)>);

impl Domain {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(c, v)| format!("{c}={v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

impl Serialize for Domain {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Domain;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of column to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Domain, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(Domain(pairs))
            }
        }
        deserializer.deserialize_map(V)
    }
}
