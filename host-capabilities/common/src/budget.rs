use crate::LimitExceeded;

/// Bytes the host may still hand to a guest during one invocation.
///
/// Capabilities charge every result they return; once the budget is spent the
/// call fails with `limit-exceeded` instead of copying more into the guest.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    limit: u64,
    used: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Self {
        Self { limit, used: 0 }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn remaining(&self) -> u64 {
        self.limit - self.used
    }

    /// Takes `bytes` from the budget, or fails without taking anything.
    pub fn charge(&mut self, bytes: u64) -> Result<(), LimitExceeded> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(LimitExceeded {
                limit: "max-output",
                allowed: format!("{} bytes", self.limit),
                attempted: Some(format!("{} more bytes after {}", bytes, self.used)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_spent() {
        let mut b = ByteBudget::new(10);
        b.charge(4).unwrap();
        b.charge(6).unwrap();
        assert_eq!(b.remaining(), 0);
        let err = b.charge(1).unwrap_err();
        assert_eq!(err.limit, "max-output");
        assert_eq!(b.remaining(), 0);
    }

    #[test]
    fn overflow_is_a_limit_not_a_panic() {
        let mut b = ByteBudget::new(u64::MAX);
        b.charge(u64::MAX).unwrap();
        assert!(b.charge(1).is_err());
    }
}
