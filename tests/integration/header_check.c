/* Compiled after the public header under test is force-included twice
 * (-include): the header must compile alone, in C and in C++, and its
 * include guard must hold. */
int main(void) { return 0; }
