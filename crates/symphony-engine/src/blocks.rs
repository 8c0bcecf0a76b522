//! The KV block allocator with prefix caching.
//!
//! Blocks are reference-counted. A block whose [`KV_BLOCK_SIZE`] positions are all computed
//! is registered under a hash of its tokens and of every token before it, so a later sequence
//! with the same prefix (same model, same tokens) takes the block instead of recomputing it.
//! A block whose positions are only partly computed (the end of a prompt or of a finished
//! sequence) is registered too, with the tokens it holds: a later sequence whose prefix ends
//! inside it copies it and keeps the positions they have in common, so sharing goes to the
//! token, not to the block (a system prompt rarely ends on a block boundary).
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

/// What a registered block holds.
#[derive(Debug)]
struct Entry {
    /// The key of the full block before it (`None`: it is a sequence's first block).
    parent: Option<BlockKey>,
    /// The tokens at its computed positions, from its first: all [`KV_BLOCK_SIZE`] of them
    /// when full.
    tokens: Vec<TokenId>,
    /// Its key in the exact-match map, when full.
    key: Option<BlockKey>,
}

#[derive(Debug)]
pub struct BlockAllocator {
    refs: Vec<u32>,
    entries: Vec<Option<Entry>>,
    /// Full registered blocks by key.
    cached: HashMap<BlockKey, u32>,
    /// Every registered block, full or not, by the key of the block before it: where a
    /// match that ends inside a block looks.
    children: HashMap<Option<BlockKey>, Vec<u32>>,
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
            entries: (0..n_blocks).map(|_| None).collect(),
            cached: HashMap::new(),
            children: HashMap::new(),
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
                self.unregister(b);
                b
            }
        };
        self.refs[block as usize] = 1;
        Some(block)
    }

    /// Takes a new block to copy `source` into; `source` itself is never the one evicted
    /// for it, and counts as just used.
    pub fn allocate_copy_of(&mut self, source: u32) -> Option<u32> {
        self.acquire(source);
        let block = self.allocate();
        self.release(source);
        block
    }

    /// Whether a block is cached under `key` (a lookup may still find other tokens there).
    pub fn contains(&self, key: BlockKey) -> bool {
        self.cached.contains_key(&key)
    }

    /// The cached block for `key` holding `tokens`, with a reference taken on it.
    pub fn lookup(&mut self, key: BlockKey, tokens: &[TokenId]) -> Option<u32> {
        self.lookups += 1;
        let &block = self.cached.get(&key)?;
        if self.entries[block as usize].as_ref().map(|e| &e.tokens[..]) != Some(tokens) {
            return None;
        }
        self.acquire(block);
        self.hits += 1;
        Some(block)
    }

    /// The registered block after `parent` whose tokens begin with the longest run of
    /// `tokens`, and the length of that run (at least one). No reference is taken: copy it
    /// ([`Self::allocate_copy_of`]) before anything else allocates.
    pub fn longest_match(
        &mut self,
        parent: Option<BlockKey>,
        tokens: &[TokenId],
    ) -> Option<(u32, usize)> {
        self.lookups += 1;
        let best = self
            .after(parent)
            .map(|(block, held)| {
                let common = held.iter().zip(tokens).take_while(|(a, b)| a == b).count();
                (block, common)
            })
            .max_by_key(|&(_, common)| common)
            .filter(|&(_, common)| common > 0)?;
        self.hits += 1;
        Some(best)
    }

    /// The registered blocks after `parent`, with the tokens each holds.
    fn after(&self, parent: Option<BlockKey>) -> impl Iterator<Item = (u32, &[TokenId])> {
        let blocks = self.children.get(&parent).map_or(&[][..], Vec::as_slice);
        blocks.iter().map(|&block| {
            let entry = self.entries[block as usize].as_ref().expect("indexed");
            (block, &entry.tokens[..])
        })
    }

    /// Records that `block`, which follows the full block keyed `parent`, holds `tokens` at
    /// its first positions (all of them when full). A block registered before may grow this
    /// way as its owner computes more. Nothing is recorded when another block already holds
    /// the same tokens after `parent` (two sequences computed the same prefix at once): this
    /// one stays private. Returns the key of a full block, recorded or not.
    pub fn register(
        &mut self,
        block: u32,
        parent: Option<BlockKey>,
        tokens: &[TokenId],
    ) -> Option<BlockKey> {
        debug_assert!(!tokens.is_empty() && tokens.len() <= KV_BLOCK_SIZE);
        let key = (tokens.len() == KV_BLOCK_SIZE).then(|| BlockKey::next(parent, tokens));
        if let Some(entry) = &self.entries[block as usize] {
            let grows = entry.key.is_none()
                && entry.parent == parent
                && tokens.len() > entry.tokens.len()
                && tokens.starts_with(&entry.tokens);
            if !grows {
                return key;
            }
            self.unregister(block);
        }
        let held_elsewhere = match key {
            Some(key) => self.cached.contains_key(&key),
            None => self.after(parent).any(|(_, held)| held.starts_with(tokens)),
        };
        if held_elsewhere {
            return key;
        }
        if let Some(key) = key {
            self.cached.insert(key, block);
        }
        self.children.entry(parent).or_default().push(block);
        self.entries[block as usize] = Some(Entry {
            parent,
            tokens: tokens.to_vec(),
            key,
        });
        key
    }

    /// Drops one reference; an unused block becomes idle (cached) or free.
    pub fn release(&mut self, block: u32) {
        let r = &mut self.refs[block as usize];
        debug_assert!(*r > 0, "block {block} released more often than taken");
        *r -= 1;
        if *r == 0 {
            if self.entries[block as usize].is_some() {
                self.clock += 1;
                self.idle_since[block as usize] = self.clock;
                self.idle.insert(self.clock, block);
            } else {
                self.free.push(block);
            }
        }
    }

    fn acquire(&mut self, block: u32) {
        if self.refs[block as usize] == 0 {
            self.idle.remove(&self.idle_since[block as usize]);
        }
        self.refs[block as usize] += 1;
    }

    /// Forgets what `block` holds (its reference count and free/idle state are the
    /// caller's).
    fn unregister(&mut self, block: u32) {
        let Some(entry) = self.entries[block as usize].take() else {
            return;
        };
        if let Some(key) = entry.key {
            self.cached.remove(&key);
        }
        if let Some(siblings) = self.children.get_mut(&entry.parent) {
            siblings.retain(|&b| b != block);
            if siblings.is_empty() {
                self.children.remove(&entry.parent);
            }
        }
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
            alloc.register(b, i.checked_sub(1).map(|p| keys[p]), chunk);
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
        let (a, b) = (alloc.allocate().unwrap(), alloc.allocate().unwrap());
        alloc.register(a, None, &t);
        alloc.register(b, None, &t);
        alloc.release(b);
        assert_eq!(alloc.allocate(), Some(b)); // b went back to the free list
                                               // The same for a block that ends mid-way: one holding as much or more is enough.
        alloc.register(b, None, &t[..5]);
        alloc.release(b);
        assert_eq!(alloc.allocate(), Some(b));
    }

    #[test]
    fn a_match_can_end_inside_a_block() {
        let mut alloc = BlockAllocator::new(4);
        let t = tokens(2 * KV_BLOCK_SIZE, 3);
        let first = BlockKey::chain(&t)[0];
        let (a, b) = (alloc.allocate().unwrap(), alloc.allocate().unwrap());
        alloc.register(a, None, &t[..KV_BLOCK_SIZE]);
        // b, after a, grows as its owner computes: 3 positions, then 6.
        alloc.register(b, Some(first), &t[KV_BLOCK_SIZE..KV_BLOCK_SIZE + 3]);
        alloc.register(b, Some(first), &t[KV_BLOCK_SIZE..KV_BLOCK_SIZE + 6]);
        let mut other = t[KV_BLOCK_SIZE..].to_vec();
        other[4] += 1;
        assert_eq!(alloc.longest_match(Some(first), &other), Some((b, 4)));
        // After another parent, or with another first token, there is nothing.
        assert_eq!(alloc.longest_match(None, &other), None);
        other[0] += 1;
        assert_eq!(alloc.longest_match(Some(first), &other), None);
        // A full block is a candidate too.
        let mut head = t[..KV_BLOCK_SIZE].to_vec();
        head[9] += 1;
        assert_eq!(alloc.longest_match(None, &head), Some((a, 9)));
        // Released, b stays cached; a copy of it never evicts it, and it is then the most
        // recently used.
        alloc.release(a);
        alloc.release(b);
        let _free = (alloc.allocate().unwrap(), alloc.allocate().unwrap());
        let d = alloc.allocate_copy_of(b).unwrap();
        assert_eq!(d, a); // the older idle block went, not b
        assert_eq!(alloc.longest_match(None, &head), None);
        assert_eq!(
            alloc.longest_match(Some(first), &t[KV_BLOCK_SIZE..]),
            Some((b, 6))
        );
        assert_eq!(alloc.allocate(), Some(b));
    }
}
