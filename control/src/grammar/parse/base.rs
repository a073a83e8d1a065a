//! The base options of `do_parse`: commands (`-A -D -I -R -L -S -F -Z -N -X -E -P`) with their
//! trailing arguments, and the rule and output options (`-p -s -d -j -g -i -o -f -v -n -x -m -t
//! -w -c`), with iptables' checks and messages.

use super::*;

pub(super) fn base_option(
    st: &mut State,
    c: char,
    arg: Option<String>,
    tok: &str,
) -> CmdResult<()> {
    let restore = st.mode != ParseMode::Command;
    let req = |a: &Option<String>| a.clone().unwrap_or_default();
    match c {
        'A' => {
            st.add_command(CMD_APPEND, 0)?;
            st.chain = Some(req(&arg));
        }
        'C' => {
            st.add_command(CMD_CHECK, 0)?;
            st.chain = Some(req(&arg));
        }
        'D' => {
            st.add_command(CMD_DELETE, 0)?;
            st.chain = Some(req(&arg));
            if let Some(n) = st.next_plain() {
                st.rulenum = Some(parse_rulenum(&n)?);
                st.command = CMD_DELETE_NUM;
            }
        }
        'R' => {
            st.add_command(CMD_REPLACE, 0)?;
            st.chain = Some(req(&arg));
            match st.next_plain() {
                Some(n) => st.rulenum = Some(parse_rulenum(&n)?),
                None => return Err(CmdError::param("-R requires a rule number")),
            }
        }
        'I' => {
            st.add_command(CMD_INSERT, 0)?;
            st.chain = Some(req(&arg));
            st.rulenum = Some(match st.next_plain() {
                Some(n) => parse_rulenum(&n)?,
                None => 1,
            });
        }
        'L' | 'S' | 'F' | 'Z' | 'X' => {
            let (cmd, others) = match c {
                'L' => (CMD_LIST, CMD_ZERO | CMD_ZERO_NUM),
                'S' => (CMD_LIST_RULES, CMD_ZERO | CMD_ZERO_NUM),
                'F' => (CMD_FLUSH, 0),
                'Z' => (CMD_ZERO, CMD_LIST | CMD_LIST_RULES),
                _ => (CMD_DELETE_CHAIN, 0),
            };
            st.add_command(cmd, others)?;
            let chain = arg.or_else(|| st.next_plain());
            if chain.is_some() {
                st.chain = chain;
            }
            if matches!(c, 'L' | 'S' | 'Z') && st.chain.is_some() {
                if let Some(n) = st.next_plain() {
                    st.rulenum = Some(parse_rulenum(&n)?);
                    if c == 'Z' {
                        st.command = (st.command & !CMD_ZERO) | CMD_ZERO_NUM;
                    }
                }
            }
        }
        'N' => {
            let name = req(&arg);
            st.add_command(CMD_NEW_CHAIN, 0)?;
            if name.starts_with('-') {
                return Err(CmdError::param("chain name not allowed to start with `-'"));
            }
            if name.starts_with('!') {
                return Err(CmdError::param("chain name not allowed to start with `!'"));
            }
            if name.is_empty()
                || ext::find_target(&name).is_some()
                || matches!(name.as_str(), "ACCEPT" | "DROP" | "QUEUE" | "RETURN")
            {
                return Err(CmdError::param("chain name may not clash with target name"));
            }
            if name.len() <= classifier::MAX_CHAIN_NAME_LEN && !valid_name(&name) {
                return Err(CmdError::param(format!("Invalid chain name `{name}'")));
            }
            st.chain = Some(name);
        }
        'E' => {
            st.add_command(CMD_RENAME_CHAIN, 0)?;
            st.chain = Some(req(&arg));
            match st.next_plain() {
                Some(n) => st.newname = Some(n),
                None => {
                    return Err(CmdError::param(
                        "-E requires old-chain-name and new-chain-name",
                    ))
                }
            }
        }
        'P' => {
            st.add_command(CMD_SET_POLICY, 0)?;
            st.chain = Some(req(&arg));
            match st.next_plain() {
                Some(p) => st.policy = Some(p),
                None => return Err(CmdError::param("-P requires a chain and a policy")),
            }
        }
        'h' => {
            return Err(CmdError::plain(0, crate::help::HELP.to_string()));
        }
        'V' => {
            return Err(CmdError::plain(
                0,
                format!("iptables {}\n", crate::error::VERSION),
            ));
        }
        'p' => {
            st.set_option(OPT_PROTOCOL)?;
            let p = values::parse_protocol(&req(&arg))?;
            if p == 0 && st.invert {
                return Err(CmdError::param("rule would never match protocol"));
            }
            st.rule.proto = Some(Inv::new(p, st.invert));
        }
        's' => {
            st.set_option(OPT_SOURCE)?;
            st.src = Some(req(&arg));
            st.inv_src = st.invert;
        }
        'd' => {
            st.set_option(OPT_DESTINATION)?;
            st.dst = Some(req(&arg));
            st.inv_dst = st.invert;
        }
        'j' | 'g' => {
            st.set_option(OPT_JUMP)?;
            // iptables takes the -j name from argv itself, so `--jump=X` names target "--jump=X".
            let name = if c == 'j' && tok.starts_with("--") && tok.contains('=') {
                tok.to_string()
            } else {
                req(&arg)
            };
            if c == 'g' {
                if name.is_empty() {
                    return Err(CmdError::param("Illegal empty chain name"));
                }
                st.goto = true;
            }
            check_target_name(&name)?;
            st.jumpto = Some(name.clone());
            if c == 'j' {
                if let Some(text) = ext::find_target(&name) {
                    st.seq += 1;
                    st.target = Some(LoadedTarget {
                        ext: text,
                        t: (text.init)(),
                        seen: 0,
                        seq: st.seq,
                    });
                }
            }
        }
        'i' | 'o' => {
            let which = if c == 'i' {
                OPT_VIANAMEIN
            } else {
                OPT_VIANAMEOUT
            };
            st.set_option(which)?;
            let iface = values::parse_iface(&req(&arg))?;
            let v = Some(Inv::new(iface, st.invert));
            if c == 'i' {
                st.rule.in_iface = v;
            } else {
                st.rule.out_iface = v;
            }
        }
        'f' => {
            st.set_option(OPT_FRAGMENT)?;
            st.rule.frag = Some(if st.invert {
                FragMatch::FirstOrUnfragmented
            } else {
                FragMatch::NonFirst
            });
        }
        'v' => {
            if st.options & OPT_VERBOSE == 0 {
                st.set_option(OPT_VERBOSE)?;
            }
        }
        'n' => st.set_option(OPT_NUMERIC)?,
        'x' => st.set_option(OPT_EXPANDED)?,
        '0' => st.set_option(OPT_LINENUMBERS)?,
        'm' => {
            if st.invert {
                return Err(CmdError::param("unexpected ! flag before --match"));
            }
            let name = req(&arg);
            let Some(m) = ext::find_match(&name) else {
                return Err(CmdError::param(format!(
                    "Couldn't load match `{name}':No such file or directory\n"
                )));
            };
            st.load_match(m);
        }
        't' => {
            if st.invert {
                return Err(CmdError::param("unexpected ! flag before --table"));
            }
            if restore {
                return Err(CmdError::param(
                    "The -t option cannot be used in iptables-restore.\n",
                ));
            }
            st.table_name = req(&arg);
            st.table_set = true;
        }
        'w' | 'W' => {
            if restore {
                return Err(CmdError::param(format!(
                    "You cannot use `-{c}' from iptables-restore"
                )));
            }
            let v = arg.or_else(|| st.next_plain());
            if c == 'w' {
                let secs = match v {
                    Some(v) => Some(
                        values::parse_uint(&v, 0, u64::from(u32::MAX))
                            .ok_or_else(|| CmdError::param("wait seconds not numeric"))?
                            as u32,
                    ),
                    None => None,
                };
                st.wait = Some(secs);
            } else if !st.wait_interval {
                st.wait_interval = true;
                st.notes
                    .push_str("Ignoring deprecated --wait-interval option.\n");
            }
        }
        'c' => {
            st.set_option(OPT_COUNTERS)?;
            let pcnt = req(&arg);
            let Some(bcnt) = st.next_plain() else {
                return Err(CmdError::param("-c requires packet and byte counter"));
            };
            let packets = parse_counter(&pcnt)
                .ok_or_else(|| CmdError::param("-c packet counter not numeric"))?;
            let bytes = parse_counter(&bcnt)
                .ok_or_else(|| CmdError::param("-c byte counter not numeric"))?;
            st.counters = Some(Counters { packets, bytes });
        }
        'M' | '4' => {}
        '6' => {
            return Err(CmdError::plain(
                2,
                "This is the IPv4 version of iptables.\n",
            ))
        }
        _ => return Err(CmdError::param(format!("unknown option \"{tok}\""))),
    }
    Ok(())
}

/// Names may not hold whitespace or quotes (they could not be saved and restored).
fn valid_name(name: &str) -> bool {
    !name
        .chars()
        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
}

/// The checks iptables applies to a `-j`/`-g` name while parsing.
fn check_target_name(name: &str) -> CmdResult<()> {
    if name.is_empty() {
        return Err(CmdError::param("Invalid target name (too short)"));
    }
    if name.len() > classifier::MAX_CHAIN_NAME_LEN {
        return Err(CmdError::param(format!(
            "Invalid target name `{name}' ({} chars max)",
            classifier::MAX_CHAIN_NAME_LEN
        )));
    }
    if !valid_name(name) {
        return Err(CmdError::param(format!("Invalid target name `{name}'")));
    }
    Ok(())
}

fn parse_counter(s: &str) -> Option<u64> {
    // sscanf("%llu"): leading digits.
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
