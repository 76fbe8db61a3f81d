//! A resumable, shuffled pass over one kind of data, epoch after epoch.
//!
//! Data comes in *units*: a shard, or one unit holding every file or line. Each epoch visits
//! the units in a seeded order and the items of each unit in a seeded order, as WebDataset's
//! shard shuffle plus in-shard shuffle; only the current shard is in memory. The position
//! ([`StreamState`]) is three numbers, and every random choice made for an item is drawn from
//! a generator derived from `(seed, task, epoch, unit, item)`, so resuming needs no generator
//! state and prefetching cannot change the order.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vlbeit_core::rng::Rng;
use vlbeit_core::shards::{Sample, ShardReader};

use super::DataError;

/// Where a stream stands: the next item is item `offset` of unit `unit` in the epoch's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamState {
    pub epoch: u64,
    pub unit: usize,
    pub offset: usize,
}

pub(crate) enum Units {
    Shards(Vec<PathBuf>),
    Files(Vec<PathBuf>),
    Lines(Vec<String>),
}

pub(crate) enum Item {
    Sample { shard: PathBuf, sample: Sample },
    File(PathBuf),
    Line(String),
}

/// Labels below `(seed, task, epoch)` in [`Rng::derive_path`].
const UNIT_ORDER: u64 = 0;
const ITEM_ORDER: u64 = 1;
const ITEM: u64 = 2;

struct Loaded {
    epoch: u64,
    unit: usize,
    order: Vec<usize>,
    samples: Vec<Sample>,
}

pub(crate) struct Stream {
    units: Units,
    seed: u64,
    task: u64,
    shuffle: bool,
    state: StreamState,
    unit_order: Option<(u64, Vec<usize>)>,
    loaded: Option<Loaded>,
}

impl Stream {
    pub fn new(units: Units, seed: u64, task: u64, shuffle: bool, state: StreamState) -> Self {
        Self {
            units,
            seed,
            task,
            shuffle,
            state,
            unit_order: None,
            loaded: None,
        }
    }

    pub fn state(&self) -> StreamState {
        self.state
    }

    pub fn num_units(&self) -> usize {
        match &self.units {
            Units::Shards(shards) => shards.len(),
            Units::Files(_) | Units::Lines(_) => 1,
        }
    }

    fn permutation(&self, n: usize, path: &[u64]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if self.shuffle {
            let mut full = vec![self.task, self.state.epoch];
            full.extend_from_slice(path);
            Rng::derive_path(self.seed, &full).shuffle(&mut order);
        }
        order
    }

    fn unit_id(&mut self) -> usize {
        let epoch = self.state.epoch;
        if self.unit_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let order = self.permutation(self.num_units(), &[UNIT_ORDER]);
            self.unit_order = Some((epoch, order));
        }
        let (_, order) = self.unit_order.as_ref().expect("set above");
        order[self.state.unit]
    }

    /// Makes unit `unit` of the current epoch the loaded one; returns its length.
    fn load(&mut self, unit: usize) -> Result<usize, DataError> {
        let epoch = self.state.epoch;
        if let Some(loaded) = &self.loaded
            && loaded.epoch == epoch
            && loaded.unit == unit
        {
            return Ok(loaded.order.len());
        }
        let (len, samples) = match &self.units {
            Units::Shards(shards) => {
                // A shard is loaded again each epoch rather than kept: only one is in memory.
                let samples = ShardReader::open(&shards[unit])?.collect::<Result<Vec<_>, _>>()?;
                (samples.len(), samples)
            }
            Units::Files(files) => (files.len(), Vec::new()),
            Units::Lines(lines) => (lines.len(), Vec::new()),
        };
        let order = self.permutation(len, &[ITEM_ORDER, unit as u64]);
        self.loaded = Some(Loaded {
            epoch,
            unit,
            order,
            samples,
        });
        Ok(len)
    }

    /// The next item and its generator. At the end of an epoch, the next epoch begins when
    /// `wrap` is set; otherwise `None` (and again `None` on later calls).
    pub fn next(&mut self, wrap: bool) -> Result<Option<(Item, Rng)>, DataError> {
        let mut empty_units = 0;
        loop {
            if self.state.unit >= self.num_units() {
                if !wrap {
                    return Ok(None);
                }
                self.state = StreamState {
                    epoch: self.state.epoch + 1,
                    unit: 0,
                    offset: 0,
                };
            }
            let unit = self.unit_id();
            let len = self.load(unit)?;
            if self.state.offset >= len {
                if len == 0 {
                    empty_units += 1;
                    if empty_units > self.num_units() {
                        return Err(DataError::Empty {
                            what: "samples",
                            paths: self.paths(),
                        });
                    }
                }
                self.state.unit += 1;
                self.state.offset = 0;
                continue;
            }
            let loaded = self.loaded.as_ref().expect("loaded above");
            let index = loaded.order[self.state.offset];
            self.state.offset += 1;
            let item = match &self.units {
                Units::Shards(shards) => Item::Sample {
                    shard: shards[unit].clone(),
                    sample: loaded.samples[index].clone(),
                },
                Units::Files(files) => Item::File(files[index].clone()),
                Units::Lines(lines) => Item::Line(lines[index].clone()),
            };
            let path = [self.task, self.state.epoch, ITEM, unit as u64, index as u64];
            return Ok(Some((item, Rng::derive_path(self.seed, &path))));
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        match &self.units {
            Units::Shards(paths) | Units::Files(paths) => paths.clone(),
            Units::Lines(_) => Vec::new(),
        }
    }
}
