//! A PCI function with BARs: configuration space, the BAR registers, and a handler the
//! VMM gives for moving a BAR's mapping when the guest reprograms it.

use std::sync::{Mutex, MutexGuard};

use super::bar::{Bar, BarError, BarMove, Bars};
use super::config::{reg, ConfigSpace, Header};
use super::PciDevice;

/// Called, outside any lock of the function, for each BAR the guest moved.
pub type MoveHandler = Box<dyn Fn(&BarMove) + Send + Sync>;

const COMMAND_IO: u16 = 1 << 0;
const COMMAND_MEMORY: u16 = 1 << 1;

struct State {
    config: ConfigSpace,
    bars: Bars,
}

pub struct PciFunction {
    state: Mutex<State>,
    on_move: MoveHandler,
}

impl PciFunction {
    /// A type-0 function with `bars` (index, BAR) placed where the VMM put them.
    pub fn new(
        header: Header,
        bars: &[(usize, Bar)],
        on_move: MoveHandler,
    ) -> Result<Self, BarError> {
        let mut b = Bars::default();
        for (index, bar) in bars {
            b.add(*index, *bar)?;
        }
        Ok(Self {
            state: Mutex::new(State {
                config: ConfigSpace::type0(header),
                bars: b,
            }),
            on_move,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before anything that could panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// BAR `index` and where it is mapped now.
    pub fn bar(&self, index: usize) -> Option<(Bar, u64)> {
        self.lock().bars.get(index)
    }
}

impl PciDevice for PciFunction {
    fn config_read(&self, offset: u16) -> u32 {
        let s = self.lock();
        match Bars::register_at(offset & !3) {
            Some((r, _)) => s.bars.read(r),
            None => s.config.read_dword(offset),
        }
    }

    fn config_write(&self, offset: u16, data: &[u8]) {
        let moves = {
            let mut s = self.lock();
            match Bars::register_at(offset) {
                Some(_) => s.bars.write_bytes(offset, data).into_iter().collect(),
                None => {
                    s.config.write(offset, data);
                    let end = u32::from(offset) + data.len() as u32;
                    if u32::from(offset) < u32::from(reg::COMMAND) + 2
                        && end > u32::from(reg::COMMAND)
                    {
                        let cmd = s.config.read_dword(reg::COMMAND) as u16;
                        s.bars
                            .set_decoding(cmd & COMMAND_MEMORY != 0, cmd & COMMAND_IO != 0)
                    } else {
                        Vec::new()
                    }
                }
            }
        };
        for m in &moves {
            (self.on_move)(m);
        }
    }
}
