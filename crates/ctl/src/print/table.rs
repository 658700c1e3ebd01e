//! `--write-out=table`: ASCII tables drawn the way the Go tablewriter
//! (olekukonko/tablewriter, as vendored by etcd 3.4) draws them: centered
//! upper-case headers, right-aligned cells, cells wider than 30 columns
//! word-wrapped.

use oxcd_api::etcdserverpb::MemberListResponse;

use super::{rows, EpHealth, EpStatus};

const MAX_COL_WIDTH: usize = 30;

fn width(s: &str) -> usize {
    s.chars().count()
}

/// tablewriter's WrapString: minimum-raggedness word wrap at `lim`.
fn wrap(s: &str, lim: usize) -> (Vec<String>, usize) {
    let words: Vec<&str> = s.split(' ').collect();
    let mut lim = lim;
    for w in &words {
        lim = lim.max(width(w));
    }
    let n = words.len();
    let mut length = vec![vec![0usize; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]);
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]);
        }
    }
    let mut nbrk = vec![0usize; n];
    let mut cost = vec![i64::from(i32::MAX); n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= lim {
            cost[i] = 0;
            nbrk[i] = n;
        } else {
            for j in i + 1..n {
                let d = lim as i64 - length[i][j - 1] as i64;
                let mut c = d * d + cost[j];
                if length[i][j - 1] > lim {
                    c += 100_000;
                }
                if c < cost[i] {
                    cost[i] = c;
                    nbrk[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..nbrk[i]].join(" "));
        i = nbrk[i];
    }
    (lines, lim)
}

/// Renders a table exactly like tablewriter with ALIGN_RIGHT cells.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let ncol = header.len();
    let mut cs: Vec<usize> = vec![0; ncol];
    // Header widths (capped like any cell).
    for (i, h) in header.iter().enumerate() {
        cs[i] = width(h).min(MAX_COL_WIDTH);
    }
    // Cells: the column width grows up to the cap, then the cell is wrapped
    // at the current column width.
    let mut cells: Vec<Vec<Vec<String>>> = Vec::new();
    for row in rows {
        let mut r = Vec::new();
        for (i, cell) in row.iter().enumerate().take(ncol) {
            let w = width(cell).min(MAX_COL_WIDTH);
            if cs[i] < w || cs[i] == 0 {
                cs[i] = w;
            }
            let (lines, _) = wrap(cell, cs[i]);
            let max = lines.iter().map(|l| width(l)).max().unwrap_or(0);
            if max > cs[i] {
                cs[i] = max;
            }
            r.push(lines);
        }
        cells.push(r);
    }
    let mut out = String::new();
    let line = |out: &mut String| {
        out.push('+');
        for w in &cs {
            out.push_str(&"-".repeat(w + 2));
            out.push('+');
        }
        out.push('\n');
    };
    line(&mut out);
    out.push('|');
    for (i, h) in header.iter().enumerate() {
        let t = h.replace(['_', '.'], " ").trim().to_uppercase();
        let gap = cs[i].saturating_sub(width(&t));
        let left = gap / 2;
        out.push(' ');
        out.push_str(&" ".repeat(left));
        out.push_str(&t);
        out.push_str(&" ".repeat(gap - left));
        out.push_str(" |");
    }
    out.push('\n');
    line(&mut out);
    for r in &cells {
        let height = r.iter().map(|c| c.len()).max().unwrap_or(0);
        for y in 0..height {
            out.push('|');
            for (i, c) in r.iter().enumerate() {
                let s = c.get(y).map(String::as_str).unwrap_or("");
                out.push(' ');
                out.push_str(&" ".repeat(cs[i].saturating_sub(width(s))));
                out.push_str(s);
                out.push_str(" |");
            }
            out.push('\n');
        }
    }
    line(&mut out);
    out
}

pub fn member_list(r: &MemberListResponse) -> String {
    render(&rows::MEMBER_HDR, &rows::members(r))
}

pub fn endpoint_status(list: &[EpStatus]) -> String {
    render(&rows::STATUS_HDR, &rows::statuses(list))
}

pub fn endpoint_health(list: &[EpHealth]) -> String {
    render(&rows::HEALTH_HDR, &rows::healths(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_table_matches_etcdctl() {
        let rows = vec![vec![
            "2e1259d415f2a040".to_string(),
            "started".into(),
            "default".into(),
            "http://127.0.0.1:23800".into(),
            "http://127.0.0.1:23790".into(),
            "false".into(),
        ]];
        let want = "\
+------------------+---------+---------+------------------------+------------------------+------------+
|        ID        | STATUS  |  NAME   |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+---------+------------------------+------------------------+------------+
| 2e1259d415f2a040 | started | default | http://127.0.0.1:23800 | http://127.0.0.1:23790 |      false |
+------------------+---------+---------+------------------------+------------------------+------------+
";
        assert_eq!(render(&rows::MEMBER_HDR, &rows), want);
    }

    #[test]
    fn health_table_matches_etcdctl() {
        let rows = vec![vec![
            "127.0.0.1:23790".to_string(),
            "true".into(),
            "1.187416ms".into(),
            "".into(),
        ]];
        let want = "\
+-----------------+--------+------------+-------+
|    ENDPOINT     | HEALTH |    TOOK    | ERROR |
+-----------------+--------+------------+-------+
| 127.0.0.1:23790 |   true | 1.187416ms |       |
+-----------------+--------+------------+-------+
";
        assert_eq!(render(&rows::HEALTH_HDR, &rows), want);
    }

    #[test]
    fn long_cells_wrap_at_spaces() {
        let (lines, _) = wrap("etcdserver: aaaaaaaaaa, etcdserver: bbbbbbbbbbbbbbb", 30);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 30));
    }
}
