//! The built-in program a `run` command line names, with the options that belong to
//! it. An option given to a program that does not use it is refused, not ignored: a
//! user who typed `--gpa` meant it to change something.

use granule_arch::Program;

use clap::ValueEnum;

use super::{ProgramArg, RunArgs};

const DEFAULT_TEXT: &str = "Hello from a granule guest!\n";
const DEFAULT_PORT: u16 = 0x80;
const DEFAULT_GPA: u64 = 0xd000_0000;
const DEFAULT_COUNT: u32 = 100_000;

/// An option given to a built-in program that does not use it.
#[derive(Debug, thiserror::Error)]
#[error("{option} does not apply to `{program}`; it is for {users}")]
pub struct OptionNotApplicable {
    pub option: &'static str,
    pub program: String,
    /// The programs that take the option, as `a` and `b`.
    pub users: String,
}

/// The options that belong to some programs only: (flag, given, the programs using it).
fn program_options(args: &RunArgs) -> [(&'static str, bool, &'static [ProgramArg]); 4] {
    [
        ("--text", args.text.is_some(), &[ProgramArg::Hello]),
        ("--port", args.port.is_some(), &[ProgramArg::PortProbe]),
        (
            "--gpa",
            args.gpa.is_some(),
            &[ProgramArg::MmioProbe, ProgramArg::Hammer],
        ),
        ("--count", args.count.is_some(), &[ProgramArg::Hammer]),
    ]
}

/// The program's name on the command line.
fn name(p: ProgramArg) -> String {
    p.to_possible_value()
        .map_or_else(|| format!("{p:?}"), |v| v.get_name().to_string())
}

impl RunArgs {
    /// The program to run (default `hello`), with its options or their defaults.
    pub fn built_in_program(&self) -> Result<Program, OptionNotApplicable> {
        let chosen = self.program.unwrap_or(ProgramArg::Hello);
        for (option, given, users) in program_options(self) {
            if given && !users.contains(&chosen) {
                let users: Vec<String> = users.iter().map(|&u| format!("`{}`", name(u))).collect();
                return Err(OptionNotApplicable {
                    option,
                    program: name(chosen),
                    users: users.join(" and "),
                });
            }
        }
        let gpa = self.gpa.unwrap_or(DEFAULT_GPA);
        Ok(match chosen {
            ProgramArg::Hello => Program::Hello {
                text: self.text.clone().unwrap_or_else(|| DEFAULT_TEXT.into()),
            },
            ProgramArg::Touch => Program::Touch,
            ProgramArg::TripleFault => Program::TripleFault,
            ProgramArg::PortProbe => Program::PortProbe {
                port: self.port.unwrap_or(DEFAULT_PORT),
            },
            ProgramArg::MmioProbe => Program::MmioProbe { gpa },
            ProgramArg::Spin => Program::Spin,
            ProgramArg::Hammer => Program::Hammer {
                count: self.count.unwrap_or(DEFAULT_COUNT),
                gpa,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn program(line: &[&str]) -> Result<Program, OptionNotApplicable> {
        let cli = Cli::try_parse_from([&["granule", "run"], line].concat()).unwrap();
        let Command::Run(args) = cli.command else {
            unreachable!("a run command line")
        };
        args.built_in_program()
    }

    #[test]
    fn each_program_takes_its_own_options_and_defaults() {
        assert_eq!(
            program(&[]).unwrap(),
            Program::Hello {
                text: DEFAULT_TEXT.into()
            }
        );
        assert_eq!(
            program(&["hammer", "--count", "7", "--gpa", "0x1000000000"]).unwrap(),
            Program::Hammer {
                count: 7,
                gpa: 0x10_0000_0000
            }
        );
        assert_eq!(
            program(&["port-probe", "--port", "0x60"]).unwrap(),
            Program::PortProbe { port: 0x60 }
        );
    }

    #[test]
    fn an_option_for_another_program_is_refused_naming_both() {
        let e = program(&["touch", "--text", "hi"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--text does not apply to `touch`; it is for `hello`"
        );
        let e = program(&["--port", "0x60"]).unwrap_err();
        assert_eq!((e.option, e.program.as_str()), ("--port", "hello"));
        let e = program(&["spin", "--gpa", "0x1000"]).unwrap_err();
        assert!(e.to_string().contains("`mmio-probe` and `hammer`"), "{e}");
        assert!(program(&["mmio-probe", "--count", "3"]).is_err());
    }
}
