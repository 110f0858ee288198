//! Survey designs: linearisation (strata, multistage clusters, fpc) and replicate weights.

mod cells;
mod jackknife;
mod linear;
mod rank;
mod replicate;
mod variance;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StatsError;

pub(crate) use cells::{Partition, StageCells, build_cells};
pub use jackknife::JackknifeKind;
pub use linear::{DesignSpec, LinearDesign};
pub(crate) use rank::{DIRECTION_BLOCK, DirectionSweep};
pub use replicate::{RepType, ReplicateDesign, ReplicateSpec};
pub(crate) use replicate::{RepWeights, svr_var};
pub(crate) use variance::domain_variances;

/// What to do with a stratum that has a single PSU, as R's `options(survey.lonely.psu=)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LonelyPsu {
    /// Stop with an error naming the stratum (R's default).
    #[default]
    Fail,
    /// Centre the lonely PSU at the grand mean instead of its stratum mean.
    Adjust,
    /// Give the stratum the average variance of the other strata.
    Average,
    /// Ignore the stratum's contribution.
    Remove,
    /// Treat the PSU as sampled with certainty (no contribution).
    Certainty,
}

impl FromStr for LonelyPsu {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, StatsError> {
        match s.to_ascii_lowercase().as_str() {
            "fail" => Ok(LonelyPsu::Fail),
            "adjust" => Ok(LonelyPsu::Adjust),
            "average" => Ok(LonelyPsu::Average),
            "remove" => Ok(LonelyPsu::Remove),
            "certainty" => Ok(LonelyPsu::Certainty),
            other => Err(StatsError::invalid(format!(
                "unknown lonely-PSU mode '{other}'; use fail, adjust, average, remove or certainty"
            ))),
        }
    }
}

impl fmt::Display for LonelyPsu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LonelyPsu::Fail => "fail",
            LonelyPsu::Adjust => "adjust",
            LonelyPsu::Average => "average",
            LonelyPsu::Remove => "remove",
            LonelyPsu::Certainty => "certainty",
        };
        f.write_str(s)
    }
}
