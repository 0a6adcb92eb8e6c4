//! A lint of compiled PTX for anything that would break bit-exactness.

/// Violations in `ptx`: approximate instructions (`.approx`), flush-to-zero
/// (`.ftz`), float atomics and reductions (`atom`/`red` on f32/f64), tensor
/// core instructions (`mma`, `wmma`, `wgmma`), float add/sub/mul without an
/// explicit rounding mode (which ptxas may contract into an fma), and — when
/// the source never asks for one (`source_fmas == false`) — any `fma`.
pub fn lint_ptx(ptx: &str, source_fmas: bool) -> Vec<String> {
    let mut bad = Vec::new();
    for (n, line) in ptx.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("").trim();
        if code.is_empty() || code.starts_with('.') {
            continue;
        }
        // the opcode: skip a predicate guard like `@%p1`
        let mut words = code.split_whitespace();
        let mut op = words.next().unwrap_or("");
        if op.starts_with('@') {
            op = words.next().unwrap_or("");
        }
        let float = |o: &str| o.contains(".f32") || o.contains(".f64");
        let why = if op.contains(".approx") {
            Some("approximate instruction")
        } else if op.contains(".ftz") {
            Some("flush-to-zero")
        } else if (op.starts_with("atom.") || op.starts_with("red.")) && float(op) {
            Some("float atomic")
        } else if op.starts_with("mma.") || op.starts_with("wmma.") || op.starts_with("wgmma.") {
            Some("tensor-core instruction")
        } else if ["add.f32", "sub.f32", "mul.f32", "add.f64", "sub.f64", "mul.f64"].contains(&op) {
            Some("float arithmetic without a rounding mode (contractible)")
        } else if op.starts_with("fma.") && !source_fmas {
            Some("fma the source did not ask for")
        } else {
            None
        };
        if let Some(why) = why {
            bad.push(format!("line {}: {why}: {}", n + 1, code));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_flags_each_forbidden_form_and_passes_clean_ptx() {
        let clean = "\t.visible .entry k(\n\tadd.rn.f32 \t%f3, %f1, %f2;\n\tmul.rn.f32 %f4, %f3, %f3;\n\tret;\n";
        assert!(lint_ptx(clean, false).is_empty());
        for (ptx, what) in [
            ("\tex2.approx.ftz.f32 %f1, %f2;", "approximate"),
            ("\tadd.ftz.f32 %f1, %f2, %f3;", "flush-to-zero"),
            ("\tatom.global.add.f32 %f1, [%rd1], %f2;", "atomic"),
            ("\tred.global.add.f32 [%rd1], %f2;", "atomic"),
            ("\tmma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f1}, {%r1}, {%r2}, {%f2};", "tensor-core"),
            ("\tmul.f32 %f1, %f2, %f3;", "rounding mode"),
            ("\t@%p1 fma.rn.f32 %f1, %f2, %f3, %f4;", "fma the source"),
        ] {
            let v = lint_ptx(ptx, false);
            assert_eq!(v.len(), 1, "{ptx}");
            assert!(v[0].contains(what), "{v:?}");
        }
        assert!(lint_ptx("\tfma.rn.f32 %f1, %f2, %f3, %f4;", true).is_empty());
    }
}
