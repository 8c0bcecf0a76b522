//! The KV block allocator with prefix caching.
//!
//! Blocks are reference-counted. A block whose [`KV_BLOCK_SIZE`] positions are all computed
//! is registered under a hash of its tokens and of every token before it, so a later sequence
//! with the same prefix (same model, same tokens) takes the block instead of recomputing it.
//! A registered block nobody uses stays cached until its slot is needed: eviction takes the
//! least recently released one.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use symphony_models::{TokenId, KV_BLOCK_SIZE};

/// Identifies a full block by its tokens and its whole prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey(u64);

impl BlockKey {
    /// The keys of the full blocks of `tokens`, each chained to the one before.
    pub fn chain(tokens: &[TokenId]) -> Vec<BlockKey> {
        Self::chain_from(None, tokens)
    }

    /// The keys of the full blocks of `tokens` after the block keyed `parent`.
    pub fn chain_from(mut parent: Option<BlockKey>, tokens: &[TokenId]) -> Vec<BlockKey> {
        tokens
            .chunks_exact(KV_BLOCK_SIZE)
            .map(|block| {
                let key = BlockKey::next(parent, block);
                parent = Some(key);
                key
            })
            .collect()
    }

    /// The key of the block `tokens` after the block keyed `parent` (`None`: the first).
    pub fn next(parent: Option<BlockKey>, tokens: &[TokenId]) -> BlockKey {
        // SipHash with fixed keys: stable within the process, which is all a cache that
        // lives in memory needs.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        parent.map_or(0, |k| k.0).hash(&mut h);
        tokens.hash(&mut h);
        BlockKey(h.finish())
    }
}

#[derive(Debug)]
pub struct BlockAllocator {
    refs: Vec<u32>,
    /// The key a block is registered under, if any.
    key_of: Vec<Option<BlockKey>>,
    /// The tokens of each registered block, to rule out a hash collision on lookup.
    tokens_of: Vec<Vec<TokenId>>,
    cached: HashMap<BlockKey, u32>,
    /// Blocks never registered (or evicted) and unused.
    free: Vec<u32>,
    /// Registered blocks nobody uses, by the time they were released (oldest first).
    idle: BTreeMap<u64, u32>,
    idle_since: Vec<u64>,
    clock: u64,
    pub hits: u64,
    pub lookups: u64,
}

impl BlockAllocator {
    pub fn new(n_blocks: usize) -> Self {
        Self {
            refs: vec![0; n_blocks],
            key_of: vec![None; n_blocks],
            tokens_of: vec![Vec::new(); n_blocks],
            cached: HashMap::new(),
            free: (0..n_blocks as u32).rev().collect(),
            idle: BTreeMap::new(),
            idle_since: vec![0; n_blocks],
            clock: 0,
            hits: 0,
            lookups: 0,
        }
    }

    pub fn n_blocks(&self) -> usize {
        self.refs.len()
    }

    /// Blocks that can be handed out now: free ones and idle cached ones.
    pub fn available(&self) -> usize {
        self.free.len() + self.idle.len()
    }

    /// Blocks held by running sequences.
    pub fn used(&self) -> usize {
        self.n_blocks() - self.available()
    }

    /// Takes a block for new positions, evicting the least recently used cached block when
    /// none is free.
    pub fn allocate(&mut self) -> Option<u32> {
        let block = match self.free.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.idle.pop_first()?;
                if let Some(key) = self.key_of[b as usize].take() {
                    self.cached.remove(&key);
                }
                b
            }
        };
        self.refs[block as usize] = 1;
        Some(block)
    }

    /// Whether a block is cached under `key` (a lookup may still find other tokens there).
    pub fn contains(&self, key: BlockKey) -> bool {
        self.cached.contains_key(&key)
    }

    /// The cached block for `key` holding `tokens`, with a reference taken on it.
    pub fn lookup(&mut self, key: BlockKey, tokens: &[TokenId]) -> Option<u32> {
        self.lookups += 1;
        let &block = self.cached.get(&key)?;
        if self.tokens_of[block as usize] != tokens {
            return None;
        }
        if self.refs[block as usize] == 0 {
            self.idle.remove(&self.idle_since[block as usize]);
        }
        self.refs[block as usize] += 1;
        self.hits += 1;
        Some(block)
    }

    /// Records that `block` now holds the full block `tokens` under `key`. When another block
    /// already holds it (two sequences computed the same prefix at once), this one stays
    /// private.
    pub fn register(&mut self, block: u32, key: BlockKey, tokens: &[TokenId]) {
        if self.key_of[block as usize].is_some() || self.cached.contains_key(&key) {
            return;
        }
        self.cached.insert(key, block);
        self.key_of[block as usize] = Some(key);
        self.tokens_of[block as usize] = tokens.to_vec();
    }

    /// Drops one reference; an unused block becomes idle (cached) or free.
    pub fn release(&mut self, block: u32) {
        let r = &mut self.refs[block as usize];
        debug_assert!(*r > 0, "block {block} released more often than taken");
        *r -= 1;
        if *r == 0 {
            if self.key_of[block as usize].is_some() {
                self.clock += 1;
                self.idle_since[block as usize] = self.clock;
                self.idle.insert(self.clock, block);
            } else {
                self.free.push(block);
            }
        }
    }

    /// Whether `block` is shared, so its positions must not be written.
    pub fn is_shared(&self, block: u32) -> bool {
        self.refs[block as usize] > 1 || self.key_of[block as usize].is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: usize, salt: u32) -> Vec<TokenId> {
        (0..n as u32).map(|i| i * 7 + salt).collect()
    }

    #[test]
    fn keys_chain_the_prefix() {
        let a = tokens(3 * KV_BLOCK_SIZE, 0);
        let mut b = a.clone();
        b[0] += 1; // differs in the first block only
        let (ka, kb) = (BlockKey::chain(&a), BlockKey::chain(&b));
        assert_eq!(ka.len(), 3);
        assert!(ka.iter().zip(&kb).all(|(x, y)| x != y));
        assert_eq!(BlockKey::chain(&a[..2 * KV_BLOCK_SIZE + 5]), ka[..2]);
    }

    #[test]
    fn released_blocks_stay_cached_until_evicted_least_recent_first() {
        let mut alloc = BlockAllocator::new(3);
        let t = tokens(3 * KV_BLOCK_SIZE, 1);
        let keys = BlockKey::chain(&t);
        let blocks: Vec<u32> = (0..3).map(|_| alloc.allocate().unwrap()).collect();
        assert!(alloc.allocate().is_none());
        for (i, &b) in blocks.iter().enumerate() {
            let chunk = &t[i * KV_BLOCK_SIZE..(i + 1) * KV_BLOCK_SIZE];
            alloc.register(b, keys[i], chunk);
        }
        blocks.iter().for_each(|&b| alloc.release(b));
        assert_eq!(alloc.available(), 3);
        // Block 1's prefix is taken again: it is no longer idle.
        let hit = alloc.lookup(keys[1], &t[KV_BLOCK_SIZE..2 * KV_BLOCK_SIZE]);
        assert_eq!(hit, Some(blocks[1]));
        assert_eq!(alloc.used(), 1);
        // A lookup with the right key but other tokens is a miss.
        assert_eq!(alloc.lookup(keys[0], &t[..1]), None);
        // Two allocations evict blocks 0 then 2 (released first), never the one in use.
        assert_eq!(alloc.allocate(), Some(blocks[0]));
        assert_eq!(alloc.allocate(), Some(blocks[2]));
        assert_eq!(alloc.allocate(), None);
        assert_eq!(alloc.lookup(keys[0], &t[..KV_BLOCK_SIZE]), None);
        assert_eq!((alloc.hits, alloc.lookups), (1, 3));
    }

    #[test]
    fn a_block_registered_twice_keeps_the_first() {
        let mut alloc = BlockAllocator::new(2);
        let t = tokens(KV_BLOCK_SIZE, 2);
        let key = BlockKey::chain(&t)[0];
        let (a, b) = (alloc.allocate().unwrap(), alloc.allocate().unwrap());
        alloc.register(a, key, &t);
        alloc.register(b, key, &t);
        alloc.release(b);
        assert!(!alloc.is_shared(b));
        assert_eq!(alloc.allocate(), Some(b)); // b went back to the free list
    }
}
