//! `member add|remove|update|promote|list`

use oxcd_api::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, RangeRequest,
};

use crate::cli::{GlobalArgs, MemberAddArgs, MemberCmd, MemberUpdateArgs, Rest};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};
use crate::gostr::quote;
use crate::print::{out, Format};

pub async fn run(g: &GlobalArgs, cmd: &MemberCmd) -> Result<()> {
    match cmd {
        MemberCmd::List(_) => {
            let (c, d) = super::client(g).await?;
            let resp = c
                .member_list(MemberListRequest {
                    linearizable: false,
                })
                .await?;
            d.member_list(&resp)
        }
        MemberCmd::Add(a) => add(g, a).await,
        MemberCmd::Remove(a) => {
            let id = member_id(a)?;
            let (c, d) = super::client(g).await?;
            let resp = c.member_remove(MemberRemoveRequest { id }).await?;
            d.member_remove(id, &resp)
        }
        MemberCmd::Update(a) => update(g, a).await,
        MemberCmd::Promote(a) => {
            let id = member_id(a)?;
            let (c, d) = super::client(g).await?;
            let resp = c.member_promote(MemberPromoteRequest { id }).await?;
            d.member_promote(id, &resp)
        }
    }
}

/// A hexadecimal member ID argument.
fn member_id(a: &Rest) -> Result<u64> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "member ID is not provided"));
    }
    parse_hex_u64(&a.args[0]).map_err(|e| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

/// `strconv.ParseUint(s, 16, 64)` with Go's error text.
pub fn parse_hex_u64(s: &str) -> std::result::Result<u64, String> {
    let q = quote(s.as_bytes());
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("strconv.ParseUint: parsing {q}: invalid syntax"));
    }
    u64::from_str_radix(s, 16)
        .map_err(|_| format!("strconv.ParseUint: parsing {q}: value out of range"))
}

/// The client library checks peer URLs before sending, as etcd's clientv3 does
/// (`types.NewURLs`), and fails with the parser's words.
fn check_peer_urls(urls: &[String]) -> Result<()> {
    for u in urls {
        if let Err(e) = oxcd_server::config::Url::parse(u) {
            return Err(CtlError::new(crate::error::EXIT_ERROR, format!("{e:#}")));
        }
    }
    Ok(())
}

async fn add(g: &GlobalArgs, a: &MemberAddArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "member name not provided"));
    }
    if a.peer_urls.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "member peer urls not provided",
        ));
    }
    let name = a.args[0].clone();
    let urls: Vec<String> = a.peer_urls.split(',').map(String::from).collect();
    check_peer_urls(&urls)?;
    let (c, d) = super::client(g).await?;
    let resp = c
        .member_add(MemberAddRequest {
            peer_ur_ls: urls.clone(),
            is_learner: a.learner,
        })
        .await?;
    d.member_add(&resp)?;
    if d.format != Format::Simple {
        return Ok(());
    }
    // Print the settings the new member should start with, from a member
    // list served by the member that handled the add.
    let new_id = resp.member.as_ref().map(|m| m.id).unwrap_or(0);
    let want = resp.header.map(|h| h.member_id).unwrap_or(0);
    let mut list = c
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await?;
    for _ in 0..10 {
        if list.header.map(|h| h.member_id).unwrap_or(0) == want {
            break;
        }
        // A quorum read brings the answering member up to date.
        c.range(RangeRequest {
            key: b"_".to_vec(),
            ..Default::default()
        })
        .await?;
        list = c
            .member_list(MemberListRequest {
                linearizable: false,
            })
            .await?;
    }
    let mut conf = Vec::new();
    for m in &list.members {
        for u in &m.peer_ur_ls {
            let n = if m.id == new_id {
                name.as_str()
            } else {
                m.name.as_str()
            };
            conf.push(format!("{n}={u}"));
        }
    }
    let text = format!(
        "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
        quote(name.as_bytes()),
        quote(conf.join(",").as_bytes()),
        quote(urls.join(",").as_bytes())
    );
    out(text.as_bytes());
    Ok(())
}

async fn update(g: &GlobalArgs, a: &MemberUpdateArgs) -> Result<()> {
    let id = member_id(&Rest {
        args: a.args.clone(),
    })?;
    if a.peer_urls.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "member peer urls not provided",
        ));
    }
    let urls: Vec<String> = a.peer_urls.split(',').map(String::from).collect();
    check_peer_urls(&urls)?;
    let (c, d) = super::client(g).await?;
    let resp = c
        .member_update(MemberUpdateRequest {
            id,
            peer_ur_ls: urls,
        })
        .await?;
    d.member_update(id, &resp)
}
