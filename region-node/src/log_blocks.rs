//! [`LogBlocks`]: how large and how old the region log is above its truncation point, counted
//! by blocks of [`BLOCK_POSITIONS`] positions.
//!
//! The entries themselves live in the store; a node keeps only a bounded cache of the newest
//! in memory (see [`crate::region_log`]). What a node must still know without reading the
//! store is how many bytes the log holds above the truncation point, for the size guard and
//! for status, and how old its oldest entries are. A per-entry table would grow with the log;
//! this one keeps 16 bytes per block of 1,024 positions (about 160 KiB for ten million
//! entries).
//!
//! The blocks are REPLICATED state: they are updated in apply, written to the store in the
//! apply batch and carried in snapshots, so every member counts the same bytes whatever
//! suffix of the log it holds itself (a member that restored a snapshot holds fewer entries
//! than the region retains). Block `b` covers positions `b * 1024 + 1 ..= (b + 1) * 1024`. The
//! blocks kept are those from the block of the first position above the truncation point to
//! the block of the last position, so the size counts whole blocks: it may include up to one
//! block's worth of entries just below the truncation point.
//!
//! Store layout (region state key space): `block/<block index, 8 bytes big-endian>` holds the
//! block's bytes and the newest log time (physical microseconds) of its entries.

use std::collections::VecDeque;

use dsss_raft_group::{DurableStore, KeySpace, StoreError, WriteBatch};

use crate::bytes::{Reader, corrupt, scan_range};

/// Positions per block.
pub const BLOCK_POSITIONS: u64 = 1_024;

/// The most blocks a log holds above its truncation point: room for
/// [`crate::region_log::RETAINED_RECORDS_MAX`] entries and the partial blocks at both ends.
pub const BLOCKS_MAX: usize =
    (crate::region_log::RETAINED_RECORDS_MAX / BLOCK_POSITIONS) as usize + 2;

/// The largest snapshot part of the blocks, in bytes.
pub const SNAPSHOT_PART_BYTES_MAX: usize = 8 + 4 + BLOCKS_MAX * BLOCK_BYTES;

/// The prefix of each block's key.
const BLOCK_KEY_PREFIX: &[u8] = b"block/";

/// The end of the range of block keys.
const BLOCK_KEYS_END: &[u8] = b"block0";

/// The encoded size of one block: its bytes and its newest log time.
const BLOCK_BYTES: usize = 16;

/// One block of positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBlock {
    /// Bytes of the stored entries at its positions.
    pub size_bytes: u64,
    /// The newest log time (physical microseconds) of its entries.
    pub newest_us: u64,
}

/// The part of one block above the truncation point (see [`LogBlocks::spans_above`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// Its first position above the truncation point.
    pub first: u64,
    /// Its last position.
    pub last: u64,
    /// Its bytes above the truncation point.
    pub size_bytes: u64,
    /// The newest log time of the block's entries.
    pub newest_us: u64,
}

/// The blocks of the log above its truncation point. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogBlocks {
    /// The index of the first block kept (meaningless while `blocks` is empty).
    first_block: u64,
    blocks: VecDeque<LogBlock>,
    size_bytes: u64,
}

/// The block that holds `position` (from 1).
pub fn block_of(position: u64) -> u64 {
    (position - 1) / BLOCK_POSITIONS
}

fn block_key(block: u64) -> Vec<u8> {
    let mut key = BLOCK_KEY_PREFIX.to_vec();
    key.extend_from_slice(&block.to_be_bytes());
    key
}

fn encode_block(block: &LogBlock) -> [u8; BLOCK_BYTES] {
    let mut bytes = [0; BLOCK_BYTES];
    bytes[..8].copy_from_slice(&block.size_bytes.to_be_bytes());
    bytes[8..].copy_from_slice(&block.newest_us.to_be_bytes());
    bytes
}

fn decode_block(reader: &mut Reader<'_>) -> Result<LogBlock, String> {
    Ok(LogBlock {
        size_bytes: reader.u64("block size")?,
        newest_us: reader.u64("block log time")?,
    })
}

impl LogBlocks {
    /// Bytes of the entries in the blocks kept.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// How many blocks are kept.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is kept.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks kept with their indexes, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LogBlock)> {
        (self.first_block..).zip(self.blocks.iter())
    }

    /// The part of each block above `truncated_through`, oldest first, for a log whose last
    /// position is `last_position`: its first and last position, its bytes, and its newest log
    /// time. The first block may straddle the truncation point; its bytes are then counted in
    /// proportion to its positions above it (the block keeps one total, not a size per entry).
    /// A pure function of replicated state, so every member counts the same.
    pub fn spans_above(
        &self,
        truncated_through: u64,
        last_position: u64,
    ) -> impl Iterator<Item = BlockSpan> + '_ {
        self.iter().filter_map(move |(block, log_block)| {
            let block_first = block * BLOCK_POSITIONS + 1;
            let last = ((block + 1) * BLOCK_POSITIONS).min(last_position);
            let first = block_first.max(truncated_through + 1);
            if first > last {
                return None;
            }
            let positions = last - block_first + 1;
            let above = last - first + 1;
            let size_bytes = if above == positions {
                log_block.size_bytes
            } else {
                // At most 1,024 positions and 64 GiB: the product fits in u128 easily.
                (u128::from(log_block.size_bytes) * u128::from(above) / u128::from(positions))
                    as u64
            };
            Some(BlockSpan {
                first,
                last,
                size_bytes,
                newest_us: log_block.newest_us,
            })
        })
    }

    /// The bytes above `truncated_through`, by [`LogBlocks::spans_above`].
    pub fn size_bytes_above(&self, truncated_through: u64, last_position: u64) -> u64 {
        self.spans_above(truncated_through, last_position)
            .map(|span| span.size_bytes)
            .sum()
    }

    /// Counts the entry appended at `position` (the next position of the log), of
    /// `size_bytes` and log time `log_time_us`, and writes its block.
    pub fn appended(
        &mut self,
        position: u64,
        size_bytes: u64,
        log_time_us: u64,
        space: KeySpace,
        batch: &mut WriteBatch,
    ) {
        let block = block_of(position);
        if self.blocks.is_empty() {
            self.first_block = block;
        }
        let last = self.first_block + self.blocks.len() as u64;
        assert!(
            block + 1 >= last && block <= last,
            "positions are appended in order: block {block} after blocks up to {last}"
        );
        if block == last {
            self.blocks.push_back(LogBlock::default());
        }
        let entry = self.blocks.back_mut().expect("pushed above");
        entry.size_bytes += size_bytes;
        entry.newest_us = entry.newest_us.max(log_time_us);
        self.size_bytes += size_bytes;
        batch.put(space, block_key(block), encode_block(entry).to_vec());
    }

    /// Drops the blocks whose every position is at or below `truncated_through`.
    pub fn truncated(&mut self, truncated_through: u64, space: KeySpace, batch: &mut WriteBatch) {
        let first_before = self.first_block;
        while !self.blocks.is_empty()
            && (self.first_block + 1) * BLOCK_POSITIONS <= truncated_through
        {
            let dropped = self.blocks.pop_front().expect("checked above");
            self.size_bytes -= dropped.size_bytes;
            self.first_block += 1;
        }
        if self.first_block > first_before {
            batch.delete_range(space, block_key(first_before), block_key(self.first_block));
        }
    }

    /// Checks that the blocks are those of a log truncated through `truncated_through` whose
    /// next position is `next_position`.
    pub fn check_span(&self, truncated_through: u64, next_position: u64) -> Result<(), String> {
        let expected = if next_position > 1
            && block_of(next_position - 1) >= block_of(truncated_through + 1)
        {
            Some((block_of(truncated_through + 1), block_of(next_position - 1)))
        } else {
            None
        };
        let kept = (!self.blocks.is_empty()).then(|| {
            (
                self.first_block,
                self.first_block + self.blocks.len() as u64 - 1,
            )
        });
        if kept == expected {
            Ok(())
        } else {
            Err(format!(
                "log blocks {kept:?} do not span the positions above the truncation point \
                 {truncated_through} up to {} (blocks {expected:?})",
                next_position - 1
            ))
        }
    }

    /// Adds the blocks, every one rewritten, to `batch`.
    pub fn write_all(&self, space: KeySpace, batch: &mut WriteBatch) {
        for (index, block) in self.iter() {
            batch.put(space, block_key(index), encode_block(block).to_vec());
        }
    }

    /// Appends the snapshot encoding.
    pub fn encode_snapshot(&self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(&self.first_block.to_be_bytes());
        bytes.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        for block in &self.blocks {
            bytes.extend_from_slice(&encode_block(block));
        }
    }

    /// Reads the snapshot encoding back, with its bounds checked.
    pub fn decode_snapshot(reader: &mut Reader<'_>) -> Result<LogBlocks, String> {
        let first_block = reader.u64("first block")?;
        let count = reader.u32("block count")? as usize;
        if count > BLOCKS_MAX {
            return Err(format!(
                "{count} log blocks, more than the maximum of {BLOCKS_MAX}"
            ));
        }
        let mut blocks = LogBlocks {
            first_block,
            ..LogBlocks::default()
        };
        for _ in 0..count {
            let block = decode_block(reader)?;
            blocks.size_bytes = blocks.size_bytes.saturating_add(block.size_bytes);
            blocks.blocks.push_back(block);
        }
        Ok(blocks)
    }

    /// Reads the blocks back from the store at node start.
    pub fn recover(space: KeySpace, store: &dyn DurableStore) -> Result<LogBlocks, StoreError> {
        let mut blocks = LogBlocks::default();
        scan_range(
            store,
            space,
            BLOCK_KEY_PREFIX,
            BLOCK_KEYS_END,
            |key, value| {
                let index = <[u8; 8]>::try_from(&key[BLOCK_KEY_PREFIX.len()..])
                    .map(u64::from_be_bytes)
                    .map_err(|_| "a block key ends with 8 bytes".to_owned())?;
                if blocks.blocks.is_empty() {
                    blocks.first_block = index;
                } else if index != blocks.first_block + blocks.blocks.len() as u64 {
                    return Err(format!(
                        "block {index} follows block {}",
                        blocks.first_block + blocks.blocks.len() as u64 - 1
                    ));
                }
                if blocks.blocks.len() >= BLOCKS_MAX {
                    return Err(format!("more than {BLOCKS_MAX} log blocks"));
                }
                let mut reader = Reader::new(value);
                let block = decode_block(&mut reader)?;
                reader.finish()?;
                blocks.size_bytes = blocks.size_bytes.saturating_add(block.size_bytes);
                blocks.blocks.push_back(block);
                Ok(())
            },
        )?;
        Ok(blocks)
    }

    /// The error for blocks that do not fit the recovered log, naming the first block key.
    pub fn span_error(&self, space: KeySpace, reason: String) -> StoreError {
        corrupt(space, &block_key(self.first_block), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::MemoryStore;

    const SPACE: KeySpace = KeySpace::new("region_state");

    fn append(
        blocks: &mut LogBlocks,
        store: &mut MemoryStore,
        positions: std::ops::RangeInclusive<u64>,
    ) {
        let mut batch = WriteBatch::new();
        for position in positions {
            blocks.appended(position, 10, position * 100, SPACE, &mut batch);
        }
        store.write(batch, true).unwrap();
    }

    #[test]
    fn blocks_count_bytes_and_age_and_drop_whole_blocks_only() {
        let mut blocks = LogBlocks::default();
        let mut store = MemoryStore::new();
        append(&mut blocks, &mut store, 1..=3_000);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks.size_bytes(), 30_000);
        assert_eq!(blocks.iter().last().unwrap().1.newest_us, 300_000);
        blocks.check_span(0, 3_001).unwrap();

        let mut batch = WriteBatch::new();
        blocks.truncated(2_000, SPACE, &mut batch);
        store.write(batch, true).unwrap();
        assert_eq!(blocks.len(), 2, "block 1 still holds positions above 2,000");
        assert_eq!(blocks.size_bytes(), (1_024 + 952) * 10);
        blocks.check_span(2_000, 3_001).unwrap();
        assert_eq!(LogBlocks::recover(SPACE, &store).unwrap(), blocks);

        let mut batch = WriteBatch::new();
        blocks.truncated(3_000, SPACE, &mut batch);
        store.write(batch, true).unwrap();
        assert_eq!(blocks.len(), 1, "the partial last block stays");
        blocks.check_span(3_000, 3_001).unwrap();
        assert_eq!(LogBlocks::recover(SPACE, &store).unwrap(), blocks);

        let mut bytes = Vec::new();
        blocks.encode_snapshot(&mut bytes);
        let mut reader = Reader::new(&bytes);
        assert_eq!(LogBlocks::decode_snapshot(&mut reader).unwrap(), blocks);
    }

    #[test]
    fn blocks_that_do_not_span_the_log_are_named() {
        let mut blocks = LogBlocks::default();
        let mut store = MemoryStore::new();
        append(&mut blocks, &mut store, 1..=2_000);
        assert!(blocks.check_span(0, 5_000).is_err());
        assert!(blocks.check_span(1_500, 2_001).is_err());
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let error = LogBlocks::decode_snapshot(&mut Reader::new(&bytes)).unwrap_err();
        assert!(error.contains("more than the maximum"), "{error}");
    }
}
