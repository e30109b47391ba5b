//! An arena of tree nodes addressed by index, shared by the subscription trie and the retained
//! index. Nodes refer to each other by index rather than by pointer, so neither tree needs
//! recursion or boxes to build, walk or drop (a filter can have 32,768 levels), and pruned
//! nodes are reused before the arena grows, so churn never grows it past the largest tree it
//! has held.

use std::ops::{Index, IndexMut};

/// A node's index in its arena.
pub(crate) type NodeId = usize;

/// The root: the first node allocated.
pub(crate) const ROOT: NodeId = 0;

#[derive(Debug, Default)]
pub(crate) struct Arena<T> {
    nodes: Vec<T>,
    /// Indices of released nodes, reused before the arena grows.
    free: Vec<NodeId>,
}

impl<T: Default> Arena<T> {
    /// True until the first node (the root) is allocated.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The root, if any.
    pub(crate) fn root(&self) -> Option<&T> {
        self.nodes.first()
    }

    /// An empty node: a released one if any, else a new one. The first is the root.
    pub(crate) fn alloc(&mut self) -> NodeId {
        self.free.pop().unwrap_or_else(|| {
            self.nodes.push(T::default());
            self.nodes.len() - 1
        })
    }

    /// Gives back a node the tree no longer links to. The tree prunes only empty nodes, so a
    /// released node is already in its default state when `alloc` hands it out again.
    pub(crate) fn release(&mut self, id: NodeId) {
        self.free.push(id);
    }

    /// Nodes ever allocated, in use or released: the arena's size.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes in use, the root included.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

impl<T> Index<NodeId> for Arena<T> {
    type Output = T;
    fn index(&self, id: NodeId) -> &T {
        &self.nodes[id]
    }
}

impl<T> IndexMut<NodeId> for Arena<T> {
    fn index_mut(&mut self, id: NodeId) -> &mut T {
        &mut self.nodes[id]
    }
}
