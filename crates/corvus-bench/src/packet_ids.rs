//! Packet ids of a publisher's QoS 1 and 2 messages in flight: taken in turn, freed by
//! their acknowledgement, never two in flight at once.

/// Ids in use among 1..=65535.
#[derive(Debug, Clone)]
pub struct PacketIds {
    used: Vec<bool>,
    next: u16,
    in_use: u64,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds {
            used: vec![false; 65536],
            next: 1,
            in_use: 0,
        }
    }
}

impl PacketIds {
    /// Ids in use.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The next free id after the last one taken. The caller keeps fewer than 65535 in
    /// flight (the broker's Receive Maximum bounds it), so there is always one.
    pub fn take(&mut self) -> u16 {
        assert!(self.in_use < 65535, "every packet id is in flight");
        loop {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            if !self.used[id as usize] {
                self.used[id as usize] = true;
                self.in_use += 1;
                return id;
            }
        }
    }

    /// Frees `id` (an id not in use is ignored: a broker's stray acknowledgement).
    pub fn free(&mut self, id: u16) {
        if std::mem::replace(&mut self.used[id as usize], false) {
            self.in_use -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wrap_and_skip_those_in_flight() {
        let mut ids = PacketIds::default();
        assert_eq!(ids.take(), 1);
        assert_eq!(ids.take(), 2);
        ids.free(1);
        ids.free(1);
        assert_eq!(ids.in_use(), 1);
        for _ in 3..=65535u32 {
            ids.take();
        }
        // 2 is still in flight: the next after 65535 is 1, then 3 (once freed).
        assert_eq!(ids.take(), 1);
        ids.free(3);
        assert_eq!(ids.take(), 3);
        assert_eq!(ids.in_use(), 65535);
    }
}
