//! Jackknife replicates built from a linearisation design, as R's
//! `as.svrepdesign(design, type = "JK1" | "JKn")` (via `jk1weights` / `jknweights`) with
//! `survey.drop.replicates = TRUE`: strata sampled exhaustively get no replicates.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StatsError;
use crate::table::MISSING;

use super::LonelyPsu;
use super::linear::LinearDesign;
use super::replicate::{Jackknife, JkRep, RepType, RepWeights, ReplicateDesign};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JackknifeKind {
    /// Delete-one-PSU jackknife for unstratified designs.
    Jk1,
    /// Stratified delete-one-PSU jackknife.
    Jkn,
}

impl FromStr for JackknifeKind {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, StatsError> {
        match s.to_ascii_lowercase().as_str() {
            "jk1" => Ok(JackknifeKind::Jk1),
            "jkn" => Ok(JackknifeKind::Jkn),
            other => {
                Err(StatsError::invalid(format!("unknown jackknife '{other}'; use jk1 or jkn")))
            }
        }
    }
}

impl LinearDesign {
    /// Replicate weights from this design. Only the first stage matters (R drops later-stage
    /// fpcs with a warning). `mse` is R's `as.svrepdesign(mse=)`.
    pub fn to_jackknife(
        &self,
        kind: JackknifeKind,
        mse: bool,
    ) -> Result<ReplicateDesign<'static>, StatsError> {
        let st = &self.stages[0];
        let n_psu = st.n_clusters();
        let has_strata = self.has_strata;
        let mut reps: Vec<JkRep> = Vec::new();
        let mut rscales: Vec<f64> = Vec::new();
        let scale;
        let rep_type;
        // Per stratum: sampled exhaustively (fpc factor exactly 0), R's `selfrep`.
        let selfrep: Vec<bool> = st.strata.iter().map(|s| s.fpc == 0.0).collect();
        match kind {
            JackknifeKind::Jk1 => {
                if has_strata {
                    return Err(StatsError::invalid(
                        "JK1 replicates are for unstratified designs (as R's as.svrepdesign); use --replicates jkn",
                    ));
                }
                rep_type = RepType::Jk1;
                let f = st.strata[0].fpc;
                let n = n_psu as f64;
                if f == 0.0 {
                    scale = 0.0;
                } else {
                    scale = f * (n - 1.0) / n;
                    for g in 0..n_psu as u32 {
                        reps.push(JkRep { stratum: 0, dropped: g, a: n / (n - 1.0), b: 1.0 });
                        rscales.push(1.0);
                    }
                }
            }
            JackknifeKind::Jkn => {
                if !has_strata {
                    return Err(StatsError::invalid(
                        "JKn replicates need a stratified design (as R's as.svrepdesign); use --replicates jk1",
                    ));
                }
                rep_type = RepType::Jkn;
                let n_strata = st.strata.len() as f64;
                let mut psus_of: Vec<Vec<u32>> = vec![Vec::new(); st.strata.len()];
                for (g, &s) in st.cluster_stratum.iter().enumerate() {
                    psus_of[s as usize].push(g as u32);
                }
                for (h, stratum) in st.strata.iter().enumerate() {
                    let f = stratum.fpc;
                    if f == 0.0 {
                        continue;
                    }
                    let n_h = psus_of[h].len();
                    if n_h == 1 {
                        match self.lonely {
                            LonelyPsu::Fail => {
                                return Err(StatsError::LonelyPsu {
                                    stratum: stratum.label.clone(),
                                    stage: 1,
                                    context: " (building JKn replicates)".into(),
                                });
                            }
                            LonelyPsu::Remove | LonelyPsu::Certainty | LonelyPsu::Average => {
                                continue;
                            }
                            LonelyPsu::Adjust => {
                                // R: the stratum's PSU gets 0, every other PSU H/(H-1).
                                reps.push(JkRep {
                                    stratum: h as u32,
                                    dropped: MISSING,
                                    a: 0.0,
                                    b: n_strata / (n_strata - 1.0),
                                });
                                rscales.push((n_strata - 1.0) / n_strata);
                                continue;
                            }
                        }
                    }
                    let nh = n_h as f64;
                    for &g in &psus_of[h] {
                        reps.push(JkRep {
                            stratum: h as u32,
                            dropped: g,
                            a: nh / (nh - 1.0),
                            b: 1.0,
                        });
                        rscales.push(f * (nh - 1.0) / nh);
                    }
                }
                if reps.is_empty() {
                    return Err(StatsError::Replicate(
                        "every stratum was sampled exhaustively (fpc equals the number of PSUs): there is no sampling variance to replicate".into(),
                    ));
                }
                scale = if reps.len() < n_psu && self.lonely == LonelyPsu::Average {
                    n_psu as f64 / reps.len() as f64
                } else {
                    1.0
                };
            }
        }
        let mut dropped_by = vec![MISSING; n_psu];
        for (r, rep) in reps.iter().enumerate() {
            if rep.dropped != MISSING {
                dropped_by[rep.dropped as usize] = r as u32;
            }
        }
        let selfrep_all =
            st.cluster.iter().all(|&c| selfrep[st.cluster_stratum[c as usize] as usize]);
        let jk = Jackknife {
            psu: st.cluster.clone(),
            psu_stratum: st.cluster_stratum.clone(),
            n_strata: st.strata.len(),
            reps,
            dropped_by,
        };
        Ok(ReplicateDesign {
            pweights: self.weights.clone(),
            reps: RepWeights::Jackknife(jk),
            scale,
            rscales,
            mse,
            rep_type,
            selfrep_all,
            columns: Vec::new(),
        })
    }
}
