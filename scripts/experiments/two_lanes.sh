# Sourced by the per-class experiment scripts (balance_all_classes.sh, balance_gan_seeds.sh):
# run_in_two_lanes TASK ITEM... runs `TASK ITEM` for every item in two lanes, one per core of the
# 2-core machine, the items alternating between the lanes; returns when both lanes are done.
run_in_two_lanes() {
    local task=$1; shift
    local items=("$@") even=() odd=() i item
    for i in "${!items[@]}"; do if (( i % 2 == 0 )); then even+=("${items[$i]}"); else odd+=("${items[$i]}"); fi; done
    ( for item in "${even[@]}"; do "$task" "$item"; done ) &
    for item in "${odd[@]}"; do "$task" "$item"; done
    wait
}
