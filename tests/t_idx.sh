#!/bin/sh
# t_idx.sh - the index commands as a user runs them: synth, query (every
# question, every format, errors and exit statuses), annotate, merge.
. tests/lib.sh
D=$T_TMP
t_check "synth writes an index" $PS synth "$D/a.db" --images 120 --latents 200 --quiet
t_status "synth refuses an existing file" 2 $PS synth "$D/a.db"
t_check "integrity ok" sh -c "[ \"\$(sqlite3 '$D/a.db' 'PRAGMA integrity_check')\" = ok ]"
t_check "top as TSV" sh -c "$PS query '$D/a.db' top --limit 5 | head -1 | grep -q '^latent	n_active	freq'"
t_check "top has 5 rows + header" sh -c "[ \$($PS query '$D/a.db' top --limit 5 | wc -l) -eq 6 ]"
t_check "top sorted by entropy ascending" sh -c "$PS query '$D/a.db' top --sort entropy --asc --alive --limit 3 | tail -n +2 | cut -f7 | sort -c -g"
t_check "top as JSON" sh -c "$PS query '$D/a.db' top --json --limit 2 | tr -d ' \n' | grep -q '^{\"latents\":\[{\"latent\":'"
t_check "latent detail" sh -c "$PS query '$D/a.db' latent 5 | grep -q '^# top_images'"
t_check "image with a patch" sh -c "$PS query '$D/a.db' image 3 --patch 1,1 | grep -q '^# patch'"
t_status "patch outside the grid" 1 $PS query "$D/a.db" image 3 --patch 9,9
t_check "class by name" sh -c "$PS query '$D/a.db' class 'class 2' | grep -q '^# top_latents'"
t_status "unknown class" 1 $PS query "$D/a.db" class whale
t_check "diff summary" sh -c "$PS query '$D/a.db' diff | head -1 | grep -q high_low"
t_check "sql" sh -c "[ \"\$($PS query '$D/a.db' sql 'SELECT count(*) AS n FROM images' | tail -1)\" = 120 ]"
t_status "sql refuses writes" 1 $PS query "$D/a.db" sql "DELETE FROM images"
t_status "no such latent" 1 $PS query "$D/a.db" latent 5000
t_status "unknown question" 2 $PS query "$D/a.db" frobnicate
t_status "missing index" 2 $PS query "$D/none.db" top
t_status "bad sort key" 2 $PS query "$D/a.db" top --sort bogus
t_check "annotate" $PS annotate "$D/a.db" 7 "stripes" "a note"
t_check "annotation shows in query" sh -c "$PS query '$D/a.db' latent 7 | grep -q stripes"
t_check "annotation in the view" sh -c "[ \"\$(sqlite3 '$D/a.db' \"SELECT DISTINCT name FROM latent_summary WHERE latent = 7\")\" = stripes ]"
t_status "annotate out of range" 2 $PS annotate "$D/a.db" 999 "x"
t_check "annotate --delete" $PS annotate "$D/a.db" 7 --delete
t_check "shard 0/2" $PS synth "$D/s0.db" --images 120 --latents 200 --shard 0/2 --quiet
t_check "shard 1/2" $PS synth "$D/s1.db" --images 120 --latents 200 --shard 1/2 --quiet
t_check "merge" $PS merge --quiet "$D/m.db" "$D/s0.db" "$D/s1.db"
t_status "merge refuses to overwrite" 2 $PS merge "$D/m.db" "$D/s0.db"
t_status "merge refuses overlapping shards" 2 $PS merge "$D/m2.db" "$D/s0.db" "$D/s0.db"
t_check "no half-written output" sh -c "[ ! -e '$D/m2.db' ] && ! ls '$D' | grep -q tmp"
t_check "merged statistics equal one build" sh -c "[ \"\$(sqlite3 '$D/m.db' \"ATTACH '$D/a.db' AS a; SELECT count(*) FROM (SELECT latent, n_active, freq, mean_act, max_act, entropy, top_class FROM main.latent_stats EXCEPT SELECT latent, n_active, freq, mean_act, max_act, entropy, top_class FROM a.latent_stats)\")\" = 0 ]"
t_check "merged top lists equal one build (image ids aside)" sh -c "[ \"\$($PS query '$D/m.db' latent 3 --tsv | cut --complement -f4)\" = \"\$($PS query '$D/a.db' latent 3 --tsv | cut --complement -f4)\" ]"
t_check "index version refusal" sh -c "cp '$D/a.db' '$D/v.db' && sqlite3 '$D/v.db' 'PRAGMA user_version = 9' && $PS query '$D/v.db' top 2>&1 | grep -q 'version 9'"
t_done
