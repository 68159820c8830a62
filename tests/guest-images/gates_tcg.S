/* gates_tcg: gates.S with the parts /dev/kvm (PVM) cannot run: the call gate from CPL 3 (#UD
 * under PVM) and SYSENTER/SYSEXIT (Intel semantics; #UD on this AMD host). See gates.S. */
    .set GATES_TCG, 1
    .include "gates.S"
