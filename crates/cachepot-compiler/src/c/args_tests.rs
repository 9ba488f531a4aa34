#![allow(clippy::unwrap_used)]

use super::*;

fn words(s: &str) -> Vec<OsString> {
    s.split_whitespace().map(OsString::from).collect()
}

fn ok(s: &str) -> CCompile {
    match parse(&words(s), Path::new("/w")) {
        CParsed::Cacheable(c) => *c,
        CParsed::Uncacheable(u) => panic!("{s}: {u:?}"),
    }
}

fn reason(s: &str) -> String {
    match parse(&words(s), Path::new("/w")) {
        CParsed::Uncacheable(u) => u.reason,
        CParsed::Cacheable(c) => panic!("{s}: cacheable {c:?}"),
    }
}

/// As the `cc` crate runs it for a build script (zstd-sys).
const CC_CRATE: &str = "-O0 -ffunction-sections -fdata-sections -fPIC -gdwarf-4 -fno-omit-frame-pointer -m64 -I zstd/lib/ -I zstd/lib/common -DZSTD_LIB_DEPRECATED=0 -DXXH_PRIVATE_API= -Wall -Wextra -o /t/debug/build/zstd-sys-1/out/zstd/lib/common/debug.o -c zstd/lib/common/debug.c";

#[test]
fn cc_crate_build_script_compile() {
    let c = ok(CC_CRATE);
    assert_eq!(c.language, Language::C);
    assert_eq!(c.input, "zstd/lib/common/debug.c");
    assert_eq!(
        c.output,
        "/t/debug/build/zstd-sys-1/out/zstd/lib/common/debug.o"
    );
    assert!(c.key_args.contains(&"-DZSTD_LIB_DEPRECATED=0".to_string()));
    assert!(!c
        .key_args
        .iter()
        .any(|a| a.contains("debug.o") || a.contains("debug.c")));
}

#[test]
fn cmake_style_compile_with_dependency_file() {
    let c = ok("-DFOO -I/src/include -isystem /opt/inc -O2 -g -std=gnu++17 -MD -MT CMakeFiles/x.dir/a.cpp.o -MF CMakeFiles/x.dir/a.cpp.o.d -o CMakeFiles/x.dir/a.cpp.o -c /src/a.cpp");
    assert_eq!(c.language, Language::Cxx);
    assert_eq!(c.depfile.as_deref(), Some("CMakeFiles/x.dir/a.cpp.o.d"));
    assert!(c.key_args.windows(2).any(|w| w == ["-isystem", "/opt/inc"]));
    assert!(c
        .key_args
        .windows(2)
        .any(|w| w == ["-MT", "CMakeFiles/x.dir/a.cpp.o"]));
}

#[test]
fn autotools_default_output_and_dependency_names() {
    let c = ok("-DHAVE_CONFIG_H -I. -g -O2 -MMD -c foo.c");
    assert_eq!(c.output, "foo.o");
    assert_eq!(c.depfile.as_deref(), Some("foo.d"));
    let c = ok("-c -ofoo.lo -MFdeps/foo.Plo -MD foo.c");
    assert_eq!(
        (c.output.as_str(), c.depfile.as_deref()),
        ("foo.lo", Some("deps/foo.Plo"))
    );
}

#[test]
fn side_outputs_follow_the_object() {
    let c = ok("-c -gsplit-dwarf --coverage -o out/a.o a.c");
    assert_eq!(
        c.side_outputs(),
        vec![
            (Role::CDwo, "out/a.dwo".to_string()),
            (Role::Gcno, "out/a.gcno".to_string())
        ]
    );
}

#[test]
fn languages_from_extension_and_x() {
    assert_eq!(ok("-c a.S").language, Language::AsmPreprocessed);
    assert_eq!(ok("-c a.s").language, Language::Asm);
    assert_eq!(ok("-c a.mm").language, Language::ObjCxx);
    assert_eq!(ok("-x c++ -c a.inc").language, Language::Cxx);
    assert_eq!(ok("-xc -c a.inc").language, Language::C);
    assert_eq!(reason("-c a.inc"), "unknown source type");
}

#[test]
fn what_is_not_cached() {
    assert_eq!(reason("a.c -o a"), "linking");
    assert_eq!(reason("-c a.c b.c"), "several source files");
    assert_eq!(reason("-E a.c"), "preprocessing only");
    assert_eq!(reason("-c -x c -"), "stdin input");
    assert_eq!(
        reason("-c -x c++-header a.hpp -o a.hpp.gch"),
        "precompiled header output"
    );
    assert_eq!(reason("-c -x fortran a.f"), "unsupported language");
    assert_eq!(reason("-c a.h -o a.h.gch"), "precompiled header output");
    assert!(ok("-c -fprofile-generate a.c").profile_generate);
    assert!(ok("-c -fprofile-generate=/p a.c").profile_generate);
    assert!(ok("-c -fprofile-instr-generate a.c").profile_generate);
    assert!(!ok("-c -fprofile-use=p.gcda a.c").profile_generate);
    assert_eq!(reason("-c -o"), "missing option value");
}

#[test]
fn response_files_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rsp"),
        "-c -DX=1 -DMSG=\"\\\"a b\\\"\"\n-o 'my dir/x.o' x.c\n",
    )
    .unwrap();
    match parse(&[OsString::from("@rsp")], dir.path()) {
        CParsed::Cacheable(c) => {
            assert_eq!(c.output, "my dir/x.o");
            assert!(c.key_args.contains(&"-DX=1".to_string()));
            assert!(c.key_args.contains(&"-DMSG=\"a b\"".to_string()));
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.path().join("nested"), "-c @rsp").unwrap();
    std::fs::write(dir.path().join("open"), "-c 'x.c").unwrap();
    for (file, why) in [
        ("@nested", "nested @file"),
        ("@open", "unclosed quote in @file"),
    ] {
        match parse(&[OsString::from(file)], dir.path()) {
            CParsed::Uncacheable(u) => assert_eq!(u.reason, why),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_define_changes_the_key_args() {
    assert_ne!(ok("-c -DA=1 a.c").key_args, ok("-c -DA=2 a.c").key_args);
    assert_eq!(ok("-c -o x.o a.c").key_args, ok("-c -o y/z.o a.c").key_args);
}

#[test]
fn native_options_are_cacheable_and_say_what_to_ask() {
    assert!(ok("-c a.c -O2").native_args.is_empty());
    assert_eq!(ok("-c a.c -march=native").native_args, ["-march=native"]);
    assert_eq!(
        ok("-m32 -c a.c -O2 -mtune=native -I inc --target=i686-linux-gnu").native_args,
        ["-m32", "-mtune=native", "--target=i686-linux-gnu"]
    );
    assert_eq!(
        ok("-target aarch64-linux-gnu -mcpu=native+nosve -c a.c").native_args,
        ["-target", "aarch64-linux-gnu", "-mcpu=native+nosve"]
    );
    // An explicit CPU asks nothing.
    assert!(ok("-c a.c -march=skylake -m64").native_args.is_empty());
}

#[test]
fn options_with_unknown_outputs_or_inputs_are_refused() {
    for (args, why) in [
        ("-c a.c -save-temps", "writes extra files"),
        ("-c a.c -fdump-tree-all", "writes extra files"),
        ("-c a.c -fstack-usage", "writes extra files"),
        ("-c a.c -Wp,-MD,a.d", "dependency output through -Wp"),
        ("-c a.c -fplugin=x.so", "compiler plugin"),
        ("-c a.c -B/opt/bin", "compiler search path"),
        ("-c a.c -fmodules", "clang modules"),
        ("-c a.c -o -", "output to stdout"),
        ("-c a.c -fprofile-use", "profile without a file"),
        ("-c a.c -fprofile-instr-use", "profile without a file"),
        ("-c -o x.o -- a.c", "end-of-options marker"),
        ("-c a.c -frecord-command-line", "records the command line"),
        ("-c a.c -fsave-optimization-record", "writes extra files"),
        (
            "-c a.c --write-dependencies",
            "dependency output through an alias",
        ),
        (
            "-c a.c -Xclang -load -Xclang p.so",
            "plugin, precompiled header or dependency file passed on",
        ),
        (
            "-c a.c -Xpreprocessor -MD",
            "plugin, precompiled header or dependency file passed on",
        ),
    ] {
        assert_eq!(reason(args), why, "{args}");
    }
}

#[test]
fn debug_maps_profiles_and_forced_includes_are_recorded() {
    let c = ok("-g -ffile-prefix-map=/src/=. -fprofile-use=p.gcda -include cfg.h -c a.c");
    assert!(c.debug);
    assert_eq!(c.debug_prefix_maps, vec!["/src".to_string()]);
    assert_eq!(c.extra_inputs, vec!["p.gcda".to_string()]);
    assert_eq!(c.forced_includes, vec!["cfg.h".to_string()]);
    assert!(c.embeds_cwd(Path::new("/elsewhere")));
    assert!(!c.embeds_cwd(Path::new("/src/sub")));
    assert!(!ok("-g -g0 -c a.c").debug);
    assert!(ok("-MMD -c a.c").deps_user_only);
}

#[test]
fn preprocess_args_drop_dependency_options() {
    let c = ok("-O2 -MD -MP -MT obj -MQ q -MF a.d -DX -c a.c -o a.o");
    assert_eq!(c.preprocess_args(), ["-O2", "-DX", "-E", "a.c"]);
}

#[test]
fn search_dirs_cover_every_include_form() {
    let c = ok("-Iinc -I /abs -iquote q -isystem/sys -idirafter after -c src/a.c");
    assert_eq!(
        c.search_dirs(),
        ["src", ".", "inc", "/abs", "q", "/sys", "after"]
    );
    assert_eq!(ok("-c a.c").search_dirs(), ["."]);
}

#[test]
fn language_after_the_source_is_refused() {
    assert_eq!(reason("-c a.c -x c++"), "-x after the source");
    assert_eq!(reason("-c a.c -xc++"), "-x after the source");
    assert_eq!(ok("-x c++ -c a.c").language, Language::Cxx);
}

#[test]
fn side_outputs_sit_beside_the_object_whatever_its_path() {
    let c = ok("-gsplit-dwarf=split --coverage -MD -c a.c -o ../obj/foo");
    assert_eq!(
        c.side_outputs(),
        vec![
            (Role::CDwo, "../obj/foo.dwo".to_string()),
            (Role::Gcno, "../obj/foo.gcno".to_string()),
            (Role::DepFile, "../obj/foo.d".to_string()),
        ]
    );
    assert!(ok("-MD -MMD -c a.c").deps_user_only);
    assert!(ok("-MMD -MD -c a.c").deps_user_only);
}
