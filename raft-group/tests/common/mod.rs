//! What the raft group tests share: a state machine that keeps every applied entry.

use dsss_raft_group::{
    DurableStore, KeySpace, SnapshotError, StateMachine, StoreError, WriteBatch,
};

pub const JOURNAL: KeySpace = KeySpace::new("journal");

/// A state machine that keeps every applied entry, persisted under [`JOURNAL`].
#[derive(Default)]
pub struct Journal {
    pub items: Vec<Vec<u8>>,
}

impl StateMachine for Journal {
    type Output = usize;

    fn apply(
        &mut self,
        _index: u64,
        data: &[u8],
        _store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<usize, StoreError> {
        let slot = self.items.len() as u64;
        batch.put(JOURNAL, slot.to_be_bytes().to_vec(), data.to_vec());
        self.items.push(data.to_vec());
        Ok(self.items.len())
    }

    fn snapshot(&self, _store: &dyn DurableStore) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        for item in &self.items {
            bytes.extend_from_slice(&(item.len() as u32).to_be_bytes());
            bytes.extend_from_slice(item);
        }
        Ok(bytes)
    }

    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
        decode_items(data).map(|_| ())
    }

    fn restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<(), SnapshotError> {
        self.items = decode_items(data)?;
        batch.delete_range(JOURNAL, vec![], vec![0xff; 9]);
        for (slot, item) in self.items.iter().enumerate() {
            batch.put(JOURNAL, (slot as u64).to_be_bytes().to_vec(), item.clone());
        }
        Ok(())
    }

    fn recover(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        self.items = store
            .scan(JOURNAL, &[], &[0xff; 9], usize::MAX)?
            .into_iter()
            .map(|(_, value)| value)
            .collect();
        Ok(())
    }
}

fn decode_items(mut data: &[u8]) -> Result<Vec<Vec<u8>>, SnapshotError> {
    let mut items = Vec::new();
    while !data.is_empty() {
        let (length, rest) = data
            .split_first_chunk::<4>()
            .ok_or_else(|| SnapshotError::new("truncated length"))?;
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() < length {
            return Err(SnapshotError::new("truncated item"));
        }
        items.push(rest[..length].to_vec());
        data = &rest[length..];
    }
    Ok(items)
}
