//! Redemption claims: a redemption id is claimed at its *home* shard (`shard_for(client,
//! redemption_id)`) before it is forwarded to the shard of the card it names, as order ids are.
//! Without it the same id on cards of two shards would be two redemptions, since each shard
//! keeps only its own records. A claim says where the id went, so a retry goes there too and
//! another request under the same id is a conflict.

use crate::maps::SpreadMap;
use crate::state::Decision;
use crate::*;
use serde::{Deserialize, Serialize};

/// Claims kept by this shard as the home of their redemption ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionClaims {
    pub(crate) claims: SpreadMap<(ClientId, RequestId), (Fingerprint, ShardId)>,
}

impl RedemptionClaims {
    /// Where a claimed redemption id went, and the fingerprint of the request that took it.
    pub fn get(&self, client: &ClientId, id: &RequestId) -> Option<&(Fingerprint, ShardId)> {
        self.claims.get(&(client.clone(), id.clone()))
    }

    pub fn len(&self) -> usize {
        self.claims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Lets go of a claim whose redemption was refused without a trace, if it is still the
    /// one that request made (same fingerprint); anything else changes nothing.
    pub(crate) fn decide_release(
        &self,
        client: &ClientId,
        id: &RequestId,
        fingerprint: &Fingerprint,
    ) -> Decision {
        match self.get(client, id) {
            Some((fp, _)) if fp == fingerprint => {
                Decision::Events(vec![Event::RedemptionClaimReleased {
                    client: client.clone(),
                    redemption_id: id.clone(),
                }])
            }
            _ => Decision::Answered(vec![]),
        }
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::RedemptionClaimed {
                client,
                redemption_id,
                fingerprint,
                card_shard,
            } => {
                self.claims.insert(
                    (client.clone(), redemption_id.clone()),
                    (*fingerprint, *card_shard),
                );
            }
            Event::RedemptionClaimReleased {
                client,
                redemption_id,
            } => {
                self.claims.remove(&(client.clone(), redemption_id.clone()));
            }
            _ => {}
        }
    }
}
