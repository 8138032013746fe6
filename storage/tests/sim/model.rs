//! What the simulated writers did, and the invariants checked against it.
//!
//! Every record any writer assigned is kept by LSN, with every commit that
//! was acknowledged, every truncation range and every recovered durable LSN.
//! From that the model computes the pages the volume must hold at a read
//! point: every assigned record up to it that no truncation annulled, applied
//! in LSN order (the same `RedoRecord::apply` the applicator uses).

use borealis_storage::ids::{Epoch, Lsn, PageId, ProtectionGroupId, VolumeLayout};
use borealis_storage::page::Page;
use borealis_storage::proto::{PageDigest, Truncation};
use borealis_storage::recovery_core::Recovered;
use borealis_storage::redo::RedoRecord;
use std::collections::{BTreeMap, BTreeSet};

/// The history of one simulated run.
#[derive(Debug, Default)]
pub struct History {
    records: BTreeMap<Lsn, RedoRecord>,
    /// Acknowledged commits: commit LSN -> epoch of the writer that acknowledged it.
    acknowledged: BTreeMap<Lsn, Epoch>,
    truncations: BTreeSet<Truncation>,
    /// Completed recoveries: epoch -> recovered durable LSN.
    recoveries: BTreeMap<Epoch, Lsn>,
}

impl History {
    /// Acknowledged commits so far.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.len()
    }

    /// Records assigned so far.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// A writer assigned `record`. LSNs are one space for the volume and a
    /// newer epoch's LSNs lie above every LSN of an older epoch (they start
    /// above the truncation range), whenever they were assigned.
    pub fn assigned(&mut self, record: RedoRecord) -> Result<(), String> {
        let lsn = record.lsn;
        if self.records.contains_key(&lsn) {
            return Err(format!("LSN {lsn} assigned twice"));
        }
        if let Some((below, r)) = self.records.range(..lsn).next_back()
            && r.epoch > record.epoch
        {
            return Err(format!("LSN {lsn} of epoch {} is above LSN {below} of epoch {}", record.epoch, r.epoch));
        }
        if let Some((above, r)) = self.records.range(lsn..).next()
            && r.epoch < record.epoch
        {
            return Err(format!("LSN {lsn} of epoch {} is below LSN {above} of epoch {}", record.epoch, r.epoch));
        }
        self.records.insert(lsn, record);
        Ok(())
    }

    /// A writer of `epoch` acknowledged the commit at `commit`.
    pub fn acknowledged(&mut self, commit: Lsn, epoch: Epoch) -> Result<(), String> {
        match self.records.get(&commit) {
            Some(r) if r.is_commit() && r.epoch == epoch => {}
            other => return Err(format!("acknowledged {commit} at epoch {epoch} is not a commit of it: {other:?}")),
        }
        for (newer, durable) in self.recoveries.range(Epoch(epoch.0 + 1)..) {
            if *durable < commit {
                return Err(format!(
                    "commit {commit} acknowledged at epoch {epoch} is above {durable}, recovered by epoch {newer}: lost"
                ));
            }
        }
        self.acknowledged.insert(commit, epoch);
        Ok(())
    }

    /// A new writer recovered the volume: nothing acknowledged at an older
    /// epoch may lie above its durable LSN.
    pub fn recovered(&mut self, recovered: &Recovered) -> Result<(), String> {
        if let Some((older, _)) = self.recoveries.range(recovered.epoch..).next() {
            return Err(format!("recovery at epoch {} after one at epoch {older}", recovered.epoch));
        }
        for (commit, epoch) in &self.acknowledged {
            if *epoch < recovered.epoch && *commit > recovered.durable_lsn {
                return Err(format!(
                    "acknowledged commit {commit} (epoch {epoch}) is above the durable LSN {} recovered at epoch {}",
                    recovered.durable_lsn, recovered.epoch
                ));
            }
        }
        self.recoveries.insert(recovered.epoch, recovered.durable_lsn);
        self.truncations.extend(recovered.truncations.iter().copied());
        Ok(())
    }

    /// The surviving records in `(after, up_to]`.
    pub fn surviving(&self, after: Lsn, up_to: Lsn) -> Vec<Lsn> {
        if up_to <= after {
            return Vec::new();
        }
        self.records.range(after.next()..=up_to).map(|(_, r)| r).filter(|r| !self.annulled(r)).map(|r| r.lsn).collect()
    }

    /// The highest acknowledged commit.
    pub fn last_acknowledged(&self) -> Lsn {
        self.acknowledged.keys().next_back().copied().unwrap_or(Lsn::ZERO)
    }

    fn annulled(&self, record: &RedoRecord) -> bool {
        self.truncations.iter().any(|t| t.annuls(record))
    }

    /// Every page written at or below `read_point`, as the volume must hold it.
    pub fn pages_at(&self, read_point: Lsn) -> Result<BTreeMap<PageId, Page>, String> {
        let mut pages: BTreeMap<PageId, Page> = BTreeMap::new();
        for record in self.records.range(..=read_point).map(|(_, r)| r).filter(|r| !self.annulled(r)) {
            let page = pages.entry(record.body.page()).or_default();
            record.apply(page).map_err(|e| format!("the model cannot apply {}: {e}", record.lsn))?;
        }
        Ok(pages)
    }

    /// The digest a segment of `group` must report at `read_point`.
    pub fn digest(pages: &BTreeMap<PageId, Page>, layout: VolumeLayout, group: ProtectionGroupId) -> Vec<PageDigest> {
        pages
            .iter()
            .filter(|(page, _)| layout.group_of(**page) == group)
            .map(|(page, image)| {
                let mut sealed = image.clone();
                sealed.seal();
                PageDigest { page: *page, crc: crc32c::crc32c(sealed.as_bytes()) }
            })
            .collect()
    }

    /// Groups with a record that survives at or below `read_point`.
    pub fn groups_at(&self, read_point: Lsn) -> BTreeSet<ProtectionGroupId> {
        self.records
            .range(..=read_point)
            .map(|(_, r)| r)
            .filter(|r| !self.annulled(r))
            .map(|r| r.protection_group)
            .collect()
    }
}
