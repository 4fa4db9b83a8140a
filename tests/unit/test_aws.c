/* Placeholder while the AWS call tests are written. */
int main(void) {
  return 77;
}
