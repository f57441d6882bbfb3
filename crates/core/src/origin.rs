//! Where a trial comes from, recorded with it: the report, the dashboard and the exports read
//! it from the store instead of planning the sweep again.

use crate::id::TrialId;
use serde::{Deserialize, Serialize};

/// Why a search proposed a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The first round of its group: around where the group starts.
    Start,
    /// The objective still improved towards the last probe: a step further that way.
    Expand,
    /// Inside the bracket: around the vertex of the parabola through the best probe and its
    /// neighbours.
    Refine,
    /// Between the best probe and a neighbour that diverged, did not train or was unstable:
    /// locating the stability edge.
    Edge,
    /// A scaling rule's variant of its group's best probe.
    Scaled,
}

impl Reason {
    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Expand => "expand",
            Reason::Refine => "refine",
            Reason::Edge => "edge",
            Reason::Scaled => "scaled",
        }
    }
}

/// Where a trial comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// A point of the grid (κ = 1).
    Grid,
    /// A scaling rule's variant of a base trial.
    Scaled {
        /// The base trial (κ = 1).
        base: TrialId,
        /// The rule's name.
        rule: String,
        /// The batch multiplier.
        kappa: u64,
    },
    /// A search's probe.
    Probe {
        /// Its group (the search's numbering: every combination of the other axes but the seed).
        group: u32,
        /// The round of the group that proposed it (0: the first).
        round: u32,
        /// Why.
        reason: Reason,
        /// Where the group started (the first round's probes carry it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<f64>,
    },
}

impl Origin {
    /// As stored: JSON.
    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From its stored JSON (`None`: malformed).
    pub fn from_json(s: &str) -> Option<Origin> {
        serde_json::from_str(s).ok()
    }

    /// The search group of a probe.
    pub fn group(&self) -> Option<u32> {
        match self {
            Origin::Probe { group, .. } => Some(*group),
            _ => None,
        }
    }
}
